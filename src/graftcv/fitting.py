"""`fit`: prepare → train → evaluate → save → summarize, each one call with plain values."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from graftcv import distributed
from graftcv.artifact import Classifier, save_artifact
from graftcv.backbones import create_backbone
from graftcv.choices import check_choices
from graftcv.config import TrainConfig
from graftcv.data import DataSplits, warn_skipped
from graftcv.errors import GraftcvError
from graftcv.evaluation.outputs import headline, report_for, tuned_layout
from graftcv.features import FeatureStats, extract_features, network_id, stream_features
from graftcv.model import Model
from graftcv.outcomes import Features, Run, Trained, summarize, versions
from graftcv.planning import (
    DataInput,
    Prepared,
    check_memory,
    check_multi,
    draw_splits,
    needs_feature_pass,
    plan_time,
    recorded_settings,
)
from graftcv.rundir import RunDir, claimed, data_name, default_run_dir, staging_dir, swap_in
from graftcv.snapshotting import save_snapshot_models, snapshot_plan
from graftcv.strategies import STRATEGIES, Strategy
from graftcv.tracking import tracked

log = logging.getLogger("graftcv")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_config(settings: dict) -> tuple[TrainConfig, Strategy]:
    """The run's settings: the strategy's defaults where the caller set nothing, then the caller's, then what the
    strategy fixes (a caller contradicting those is told so)."""
    unknown = set(settings) - TrainConfig.field_names()
    if unknown:
        raise GraftcvError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    strategy = STRATEGIES.lookup(settings.get("strategy", TrainConfig.strategy))
    clash = sorted(k for k, v in strategy.fixed.items() if k in settings and settings[k] != v)
    if clash:
        fixed = ", ".join(f"{k}={strategy.fixed[k]!r}" for k in clash)
        raise GraftcvError(f"The {strategy.name} strategy runs with {fixed}: drop {', '.join(clash)}.")
    config = TrainConfig(**(dict(strategy.defaults) | settings | dict(strategy.fixed))).validate()
    return check_choices(config), strategy


def prepare(data: DataInput, settings: dict) -> Prepared:
    config, strategy = resolve_config(settings)
    seed_everything(config.seed)
    if isinstance(data, DataSplits):
        if config.val or config.test:
            raise GraftcvError("In-memory splits carry their own validation and test sets: drop val and test.")
        splits, source = data, data.source or "in-memory splits"
    else:
        # rank 0 reads the data and draws the splits (or refuses them), once for every rank
        splits = distributed.decided(lambda: draw_splits(data, config))
        source = splits.source if splits.layout == "shards" else str(Path(data).resolve())
        if distributed.is_main():
            warn_skipped(splits.skipped)
    if distributed.size() > len(splits.val):
        raise GraftcvError(
            f"{distributed.size()} processes need at least as many validation images ({len(splits.val)})."
        )
    backbone = create_backbone(
        config.model,
        len(splits.classes),
        config.pretrained,
        config.weights,
        drop_rate=config.dropout,
        drop_path_rate=config.drop_path,
        size=config.size,
    )
    model_id = network_id(backbone.model, config.model)
    knobs = strategy.settings(config)
    phases = strategy.plan(knobs)
    if config.snapshots:
        phases = snapshot_plan(config, strategy, splits, phases)
    record = config.to_dict() | {
        "data": source,
        "data_config": backbone.data_config,
        "weights_source": {"kind": backbone.weights.source, "detail": backbone.weights.detail},
        "epochs": knobs.epochs,
        "train_size": config.training_size(backbone.data_config["input_size"][-1]),
        "lr": config.lr if config.lr == "auto" else knobs.lr,
        "phases": [phase.__dict__ for phase in phases],
        "data_summary": splits.describe(),
    }
    if splits.tasks is not None:
        check_multi(config, strategy, splits)
    prepared = Prepared(config, strategy, splits, backbone, model_id, phases, record)
    check_memory(prepared)
    return prepared


def feature_pass(prep: Prepared) -> Features | None:
    """Features of every image some phase trains on (or a closed-form head is fitted on), in one pass."""
    if not needs_feature_pass(prep):
        return None
    config, splits = prep.config, prep.splits
    with_test = prep.strategy.closed_form and splits.test is not None and len(splits.test) > 0
    if splits.train.stream is not None:
        return _stream_feature_pass(prep, with_test)
    paths = [*splits.train.paths, *splits.val.paths, *(splits.test.paths if with_test else [])]
    stats, started = FeatureStats(), time.perf_counter()
    share = distributed.block(len(paths))  # under DDP each rank computes a contiguous block, then all have all
    every = extract_features(
        prep.backbone.model,
        paths[share.start : share.stop],
        prep.backbone.data_config,
        prep.model_id,
        batch_size=max(config.batch_size, 64),
        num_workers=config.num_workers,
        use_cache=config.cache,
        progress=config.progress,
        description="features",
        stats=stats,
    )
    if distributed.size() > 1:
        blocks = distributed.gather((np.asarray(every), stats))
        every = np.concatenate([b[0] for b in blocks])
        stats = FeatureStats(
            sum(b[1].computed for b in blocks),
            sum(b[1].cached for b in blocks),
            max(b[1].seconds for b in blocks),
            stats.runtime,
        )
    n_train, n_val = len(splits.train), len(splits.val)
    test = every[n_train + n_val :] if with_test else None
    return Features(every[:n_train], every[n_train : n_train + n_val], test, stats, time.perf_counter() - started)


def _stream_feature_pass(prep: Prepared, with_test: bool) -> Features:
    """The feature pass over shards: each rank streams its share of every split, and the rows are put in order."""
    started, splits, config = time.perf_counter(), prep.splits, prep.config
    names = ["train", "val", *(["test"] if with_test else [])]
    arrays = []
    for name in names:
        image_set = getattr(splits, name)
        share = stream_features(
            prep.backbone.model, image_set.stream, splits.classes, prep.backbone.data_config,
            batch_size=max(config.batch_size, 64), num_workers=config.num_workers, progress=config.progress,
            rank=distributed.rank(), world=distributed.size(),
        )  # fmt: skip
        shares = distributed.gather(share)
        rows = np.empty((len(image_set), prep.backbone.model.num_features), dtype=np.float32)
        for positions, features in shares:
            rows[positions] = features
        arrays.append(rows)
    seconds = time.perf_counter() - started
    stats = FeatureStats(computed=sum(len(a) for a in arrays), seconds=seconds)
    return Features(arrays[0], arrays[1], arrays[2] if with_test else None, stats, seconds)


def targets(prep: Prepared, split: str) -> np.ndarray:
    return np.array(getattr(prep.splits, split).targets(prep.splits.classes))


def train(prep: Prepared, features: Features | None, run_dir: RunDir, resume: bool = False, timing=None) -> Trained:
    """The strategy's head fitted in closed form, or its phases trained; the network ends as the best epoch's."""
    model, n_classes, layout = prep.backbone.model, len(prep.splits.classes), prep.splits.tasks
    if prep.strategy.closed_form:
        if layout is not None:
            from graftcv.heads.multi import fit_outputs_probe

            config = prep.config
            head = fit_outputs_probe(
                features.train, targets(prep, "train"), layout, config.head, config.seed, config.pca
            )
        else:
            head = prep.strategy.fit_head(features.train, targets(prep, "train"), n_classes, prep.config)
        val_probs = head(torch.from_numpy(np.array(features.val))).numpy()
        model.reset_classifier(0)
        return Trained(Classifier(model, head), val_probs, [], 0, 0, None)
    from graftcv.training.gradient import train_phases

    cached = (features.train, features.val) if features is not None else None
    outcome = train_phases(
        model,
        prep.phases,
        prep.splits,
        prep.config,
        prep.backbone.data_config,
        cached,
        run_dir.checkpoints,
        resume,
        timing,
    )
    return Trained(
        Classifier(model, segments=layout.segments() if layout is not None else None),
        outcome.val_probs,
        outcome.history,
        outcome.epochs,
        outcome.best_epoch,
        outcome.lr_found,
        outcome.snapshots,
    )


def save(prep: Prepared, trained: Trained, val_report: dict, run_dir: RunDir) -> Model:
    config, network = prep.config, trained.network
    meta = {
        "backbone": config.model,
        "classes": prep.splits.classes,
        "data_config": prep.backbone.data_config,
        "strategy": config.strategy,
        "head": prep.strategy.head_name(config) if prep.strategy.head_name else None,
        "weights_source": prep.record["weights_source"],
        "metrics": headline(val_report),
        **({"tasks": prep.splits.tasks.as_meta()} if prep.splits.tasks is not None else {}),
        "versions": versions(),
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    save_artifact(run_dir.model, network.backbone, meta, network.probe)
    return Model(network, meta)


def evaluate_test(prep: Prepared, model: Model, features: Features | None, run_dir: RunDir) -> dict | None:
    """The kept model on the test split, when the data has one (from cached features where a probe allows)."""
    test = prep.splits.test
    if test is None or not len(test):
        return None
    if features is not None and features.test is not None:
        probs = model.network.probe(torch.from_numpy(np.array(features.test))).numpy()
    elif test.stream is not None:
        probs = model.stream_proba(test.stream, progress=prep.config.progress)
    else:
        probs, _ = model.predict_proba(test.paths, progress=prep.config.progress)
    report = report_for(targets(prep, "test"), probs, prep.splits.classes, prep.splits.tasks)
    run_dir.write_evaluation("test", report, test, probs, prep.splits.classes, prep.splits.tasks)
    return report


def fit(
    data: DataInput | None,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    **settings,
) -> Run:
    """Train a classifier on labelled images and save it under `out`.

    `data` is a folder or path,label CSV (see the README's layouts) or `DataSplits` already drawn in memory
    (`DataSplits.from_sets(train, val, test)`). Settings are `TrainConfig`'s fields (strategy, model, epochs, lr,
    augment, ...), e.g. `fit("photos/", strategy="linear-probe", head="svm")`. A finished run already in `out`
    is kept unless `overwrite` is set. `resume=True` continues the unfinished run in `out` (killed, say) from its
    last finished epoch, with the data and settings recorded there.
    """
    wall_start = time.perf_counter()
    if resume:
        if out is None:
            raise GraftcvError("Resuming needs the run directory (--resume OUT).")
        data, settings = recorded_settings(Path(out), data, settings)
    elif out and RunDir(Path(out)).finished() and not overwrite:
        raise GraftcvError(f"{out} already holds a finished run: choose another --out, or pass --overwrite.")
    if data is None:
        raise GraftcvError("No data given: pass a folder of labelled images or a path,label CSV.")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise GraftcvError(f"--out {out} is a file: give a directory for the run.")
    world = distributed.world_of(resolve_config(settings)[0])
    if world.size > 1 and not distributed.initialized():
        refuse_in_ddp(settings)
        if world.strategy == "ddp_spawn" and not world.external:
            return finished_run(
                distributed.spawn(world, _fit_spawned, data, out, overwrite, resume, settings, wall_start)
            )
        distributed.launch(world)  # with ddp, the other ranks start here: they run this command from its start
    return _fit(data, out, overwrite, resume, settings, wall_start)


def _fit_spawned(*args) -> str:
    # the spawned ranks hand back where the run went (a Run holds a network: not a thing to send between processes)
    return str(_fit(*args).out_dir)


def finished_run(out_dir: str) -> Run:
    """A finished run read back from its directory."""
    from graftcv.model import load

    run_dir = RunDir(Path(out_dir))
    return Run(Path(out_dir), load(run_dir.model), run_dir.summary(), run_dir.config(), run_dir.history() or [])


def refuse_in_ddp(settings: dict) -> None:
    if settings.get("budget"):
        raise GraftcvError("--budget plans a run of one process; with several, give --epochs or --max-time instead.")
    if settings.get("snapshots"):
        raise GraftcvError("--snapshots keeps its members on one process: train them without --devices/--num-nodes.")
    if settings.get("lr") == "auto":
        raise GraftcvError("--lr auto runs on one process: find the rate with `graftcv lr-find`, then pass --lr.")


def _fit(data: DataInput, out, overwrite: bool, resume: bool, settings: dict, wall_start: float) -> Run:
    """The run on this process; under DDP every rank comes here, and rank 0 alone locks and writes the run."""
    main = distributed.is_main()
    if not main:
        settings = settings | {"progress": False}
        logging.getLogger("graftcv").setLevel(logging.WARNING)
    prep = prepare(data, settings)
    if not main:  # the same initial weights on every rank (prepare seeded them); other crops and dropout masks
        seed_everything(prep.config.seed + distributed.rank())
    name = "splits" if isinstance(data, DataSplits) else data_name(data)
    final = distributed.decided(lambda: Path(out) if out else default_run_dir(name, prep.config.strategy))
    with contextlib.ExitStack() as lock:

        def claim() -> tuple[Path, bool]:
            lock.enter_context(claimed(final))
            # --overwrite is all or nothing: the new run is built beside the old one, which it replaces only whole
            replacing = overwrite and not resume and final.is_dir() and any(final.iterdir())
            work = staging_dir(final) if replacing else final
            if replacing:
                shutil.rmtree(work, ignore_errors=True)  # what an earlier, failed overwrite left
            try:
                work.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # read-only, no permission, a file in the way
                raise GraftcvError(f"Cannot write the run to {final}: {error.strerror or error}.") from None
            return work, replacing

        work, replacing = distributed.decided(claim)
        with tracked(prep.config, prep.record | {"out": str(final)}, work, final.name) as tracker:
            try:
                run = _run(prep, RunDir(work), final, resume, wall_start)
            except BaseException:
                if main:
                    distributed.stop_children()
                if replacing and main:
                    shutil.rmtree(work, ignore_errors=True)
                    log.warning("%s still holds the previous run: the new one did not finish.", final)
                raise
            if replacing and main:
                swap_in(work, final)
            tracker.finish(run)
        return run


def _run(prep: Prepared, run_dir: RunDir, final: Path, resume: bool, wall_start: float) -> Run:
    """Train, evaluate and save into `run_dir`, recording `final` as where the run lives."""
    world = distributed.size()
    record = prep.record | {"out": str(final), "world_size": world}
    if world > 1:
        record["world"] = distributed.current().__dict__
    if distributed.is_main():
        run_dir.write_config(record)

    timing = plan_time(prep, wall_start) if world == 1 else None  # the probe measures one process
    train_start = time.perf_counter()
    features = feature_pass(prep)
    trained = train(prep, features, run_dir, resume, timing)
    train_seconds = time.perf_counter() - train_start
    if not distributed.is_main():
        return Run(
            out_dir=final, model=None, summary={}, config=record, history=trained.history, rank=distributed.rank()
        )
    if trained.lr_found is not None:  # --lr auto: the found rate is part of the resolved settings
        record |= {"lr": trained.lr_found, "lr_auto": True}
        run_dir.write_config(record)

    if prep.splits.tasks is not None:  # each label's threshold, chosen on validation, is part of the model
        prep.splits.tasks = tuned_layout(targets(prep, "val"), trained.val_probs, prep.splits.tasks)
    val_report = report_for(targets(prep, "val"), trained.val_probs, prep.splits.classes, prep.splits.tasks)
    run_dir.write_evaluation(
        "val", val_report, prep.splits.val, trained.val_probs, prep.splits.classes, prep.splits.tasks
    )
    model = save(prep, trained, val_report, run_dir)
    test_report = evaluate_test(prep, model, features, run_dir)
    run_dir.write_history(trained.history)
    seconds = (train_seconds, time.perf_counter() - wall_start)
    summary = summarize(prep, trained, features, val_report, test_report, run_dir, seconds)
    summary["model_dir"] = str(RunDir(final).model)
    if trained.snapshots is not None:
        summary["snapshots"] = save_snapshot_models(
            prep, trained, model, run_dir, final, {"val": val_report, "test": test_report}
        )
    if timing is not None:
        rates = {"train": round(timing.rates.train, 1), "forward": round(timing.rates.forward, 1)}
        summary |= {
            "budget": prep.config.budget,
            "estimated_seconds": round(timing.estimated_seconds, 1),
            "probe_images_per_second": rates,
        }
    run_dir.write_summary(summary)
    return Run(out_dir=final, model=model, summary=summary, config=record, history=trained.history)
