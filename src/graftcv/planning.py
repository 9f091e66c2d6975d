"""Before a run starts: its throughput measured in a few seconds, its estimated time, and --budget's deadline."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graftcv.backbones import Backbone
from graftcv.config import TrainConfig, parse_duration
from graftcv.data import DataSplits, discover
from graftcv.data.shards import is_shard_source
from graftcv.errors import GraftcvError
from graftcv.features import uncached
from graftcv.rundir import RunDir
from graftcv.strategies import Phase, Strategy

if TYPE_CHECKING:
    from graftcv.training.gradient import Timing

log = logging.getLogger("graftcv")
DataInput = str | Path | DataSplits


@dataclass(frozen=True)
class Prepared:
    """What training needs before the first step: settings, strategy, data, backbone, plan, and the record of it
    all that config.json holds."""

    config: TrainConfig
    strategy: Strategy
    splits: DataSplits
    backbone: Backbone
    model_id: dict
    phases: list[Phase]
    record: dict


def needs_feature_pass(prep: Prepared) -> bool:
    return prep.strategy.closed_form or any(p.on_features for p in prep.phases)


@contextlib.contextmanager
def unchanged_random_state() -> Iterator[None]:
    """Python's, numpy's and torch's random state as they were before, whatever runs inside."""
    import random

    import torch

    python, generator = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(generator)


def plan_time(prep: Prepared, fit_started: float) -> Timing | None:
    """A few seconds of measured throughput, then the run's estimated time (logged) and, with --budget, the
    moment its training must end by: a `training.gradient.Timing`, or None for quiet runs without a budget
    (tests, compare's cells), which skip the probe."""
    from graftcv.data import ImageDataset, build_transform, make_loader
    from graftcv.feature_onnx import MIN_IMAGES_TO_EXPORT
    from graftcv.training.budget import (
        SAVE_SECONDS,
        RunClock,
        Workload,
        deadline_for,
        estimate,
        format_seconds,
        run_origin,
    )
    from graftcv.training.gradient import Timing, build_module, make_loaders
    from graftcv.training.probe import measure_throughput
    from graftcv.training.resizing import planned_sizes

    config, splits = prep.config, prep.splits
    budget = parse_duration(config.budget, "--budget")
    if budget is None and not config.progress:
        return None
    image_phases = [p for p in prep.phases if not p.on_features]
    phase = image_phases[0] if image_phases else None
    y_train = np.array(splits.train.targets(splits.classes))
    module = build_module(prep.backbone.model, config, y_train, len(splits.classes), splits.tasks)
    train_loader = make_loaders(phase, splits, config, prep.backbone.data_config, None)[0] if phase else None
    if splits.train.stream is not None:  # shards: the validation stream's first images
        from graftcv.data.shard_stream import ShardImageStream

        eval_set = ShardImageStream(splits.val.stream, splits.classes, build_transform(prep.backbone.data_config))
    else:
        sample = (splits.val.paths or splits.train.paths)[:32]
        eval_set = ImageDataset(sample, None, build_transform(prep.backbone.data_config))
    eval_loader = make_loader(eval_set, batch_size=16, num_workers=0)
    with_test = splits.test is not None and len(splits.test) > 0
    feature_paths = [*splits.train.paths, *splits.val.paths]
    if prep.strategy.closed_form and with_test:
        feature_paths += splits.test.paths
    to_compute = 0
    streamed = splits.train.stream is not None  # shard features are neither cached nor run on onnxruntime
    if needs_feature_pass(prep):
        cached = config.cache and not streamed
        to_compute = uncached(feature_paths, prep.backbone.data_config, prep.model_id) if cached else len(feature_paths)
    on_cpu = next(prep.backbone.model.parameters()).device.type == "cpu"
    onnx = on_cpu and not streamed and importlib.util.find_spec("onnxruntime") is not None
    onnx = onnx and to_compute >= MIN_IMAGES_TO_EXPORT
    full = config.training_size(prep.backbone.data_config["input_size"][-1])
    sizes = planned_sizes(config.progressive_resize, full, phase.epochs) if phase else ()
    with unchanged_random_state():  # the probe draws shuffles and augmentations: a run with it draws the same
        rates = measure_throughput(module, phase, train_loader, eval_loader, onnx_features=onnx, sizes=sizes)
    del train_loader
    work = Workload(
        n_train=len(splits.train),
        n_val=len(splits.val),
        n_test=len(splits.test) if with_test else 0,
        feature_images=to_compute,
        image_epochs=sum(p.epochs for p in image_phases),
        test_on_features=prep.strategy.closed_form,
    )
    guess = estimate(work, rates.over(sizes))
    origin = run_origin(fit_started)
    elapsed = time.perf_counter() - origin
    after_training = guess.test + SAVE_SECONDS
    deadline = None
    if budget is not None:
        seconds = budget.total_seconds()
        floor = elapsed + guess.features + after_training  # what no choice of epochs shortens
        if floor > 0.9 * seconds:
            raise GraftcvError(
                f"--budget {config.budget} is too short for {len(feature_paths)} images at "
                f"{prep.backbone.data_config['input_size'][-1]} px: the feature pass and the test alone take about "
                f"{format_seconds(floor)}; give at least {format_seconds(floor / 0.8)} or a smaller --size."
            )
        deadline = deadline_for(seconds, after_training, origin)
    parts = [f"feature pass {format_seconds(guess.features)}"] if guess.features else []
    if guess.epochs:
        planned = "as the budget allows" if budget is not None else f"{guess.epochs} × {format_seconds(guess.epoch)}"
        parts.append(f"epochs {planned}")
    if guess.test:
        parts.append(f"test {format_seconds(guess.test)}")
    total = (
        format_seconds(budget.total_seconds()) + " (--budget)"
        if budget
        else f"about {format_seconds(guess.total + elapsed)}"
    )
    log.info(
        "Estimated run: %s — %s; measured %.0f training and %.0f forward images/s.",
        total,
        ", ".join(parts) or "no training",
        rates.over(sizes).train if phase is not None else 0,
        rates.forward,
    )
    expected = budget.total_seconds() if budget is not None else guess.total + elapsed
    return Timing(rates, deadline, RunClock(after_training, guess.epoch, guess.epochs), expected)


def check_memory(prep: Prepared) -> None:
    """Refuse an input size whose training step cannot fit in this machine's memory, before anything runs
    (instead of the kernel killing the run minutes later); the message says which size would fit."""
    from graftcv.backbones.memory import activation_bytes, available_bytes, training_bytes
    from graftcv.training.gradient import micro_batching

    available = available_bytes()
    size = prep.backbone.data_config["input_size"][-1]
    image_phases = [p for p in prep.phases if not p.on_features]
    per_pass = max((micro_batching(prep.config, p)[0] for p in image_phases), default=1)
    train_size = prep.config.training_size(size) if image_phases else size
    need = training_bytes(prep.backbone.model, max(size, train_size), per_pass)
    if available is None or need is None or need <= 0.8 * available:
        return
    per_pixel = activation_bytes(prep.backbone.model, 1) or 0.0
    fixed = need - per_pixel * max(size, train_size) ** 2 * per_pass
    fits = int(max(0.0, (0.8 * available - fixed) / max(per_pixel * per_pass, 1e-9)) ** 0.5) // 16 * 16
    advice = f"choose a smaller --size (about {fits} px fits)" if fits >= 32 else "choose a smaller --size"
    raise GraftcvError(
        f"--size {size} needs about {_gigabytes(need)} of memory to train ({per_pass} images per pass), and this "
        f"machine has {_gigabytes(available)} available: {advice}, or lower --micro-batch."
    )


def _gigabytes(count: float) -> str:
    return f"{count / 2**40:.1f} TB" if count >= 2**40 else f"{count / 2**30:.1f} GB"


# where and how a run executes, not what it learns: a run killed on one machine may go on on two
RESUME_MAY_CHANGE = ("progress", "devices", "num_nodes", "strategy_ddp", "accelerator")


def recorded_settings(out: Path, data: DataInput | None, settings: dict) -> tuple[DataInput, dict]:
    """The data and settings of the unfinished run in `out`, which a resumed run must keep."""
    run_dir = RunDir(out)
    if run_dir.finished():
        raise GraftcvError(f"{out} holds a finished run: there is nothing to resume.")
    recorded = run_dir.config() if run_dir.has_config() else None
    if recorded is None:
        raise GraftcvError(f"{out} holds no run to resume (config.json is missing).")
    kept = {k: v for k, v in recorded.items() if k in TrainConfig.field_names()}
    changed = sorted(k for k, v in settings.items() if k in kept and v != kept[k] and k not in RESUME_MAY_CHANGE)
    if changed:
        raise GraftcvError(f"A resumed run keeps its settings; drop {', '.join(changed)} or start a new run.")
    if isinstance(data, DataSplits):
        pass  # in-memory splits cannot be recorded as a path: the caller passes the same ones again
    elif data is not None and Path(data).resolve() != Path(recorded["data"]):
        raise GraftcvError(f"{out} was trained on {recorded['data']}, not {Path(data).resolve()}.")
    else:
        data = recorded["data"]
    return data, kept | {k: v for k, v in settings.items() if k in RESUME_MAY_CHANGE}


def check_multi(config: TrainConfig, strategy: Strategy, splits: DataSplits) -> None:
    """What several labels per image rule out, said before anything is built."""
    if strategy.name == "prototype":
        raise GraftcvError(
            "prototype gives each image its one nearest class: for several labels per image use linear-probe "
            "(a logistic regression per label) or a gradient strategy."
        )
    if config.mixup or config.cutmix:
        raise GraftcvError("--mixup and --cutmix mix one label per image: leave them off for multi-label data.")
    if config.balance == "sampler":
        raise GraftcvError("--balance sampler draws images by class; with several labels use --balance weights.")
    if config.target is not None:
        raise GraftcvError("Domain adaptation trains one label per image; multi-label data cannot be adapted yet.")
    from graftcv.training.objectives import parse_task_weights

    parse_task_weights(config.task_weights, len(splits.tasks.tasks))


def draw_splits(data: str | Path, config: TrainConfig) -> DataSplits:
    """The splits of a folder or CSV (drawn with the seed), or those a shard set holds."""
    if is_shard_source(data):
        from graftcv.data.shard_sets import shard_splits

        if config.val or config.test:
            raise GraftcvError("Shards carry their own validation and test splits: drop --val and --test.")
        return shard_splits(data)
    from graftcv.data.multi_discovery import discover_multi, is_multi_source

    if is_multi_source(data, config.multi_label):
        return discover_multi(data, config.val, config.test, config.val_fraction, config.seed, config.multi_label)
    if config.multi_label:
        raise GraftcvError(f"--multi-label reads a CSV of path and 0/1 label columns; {data} is not one.")
    return discover(data, config.val, config.test, config.val_fraction, config.seed)
