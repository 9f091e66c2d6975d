"""`fit`: prepare → train → evaluate → save → summarize, each one call with plain values."""

from __future__ import annotations

import logging
import platform
import random
import resource
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from graftcv.artifact import Classifier, save_artifact
from graftcv.backbones import classifier_param_names, create_backbone
from graftcv.choices import check_choices
from graftcv.config import TrainConfig
from graftcv.data import DataSplits, discover, warn_skipped
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.features import FeatureStats, extract_features, model_fingerprint
from graftcv.model import Model
from graftcv.planning import DataInput, Prepared, check_memory, needs_feature_pass, plan_time, recorded_settings
from graftcv.rundir import RunDir, claimed, data_name, default_run_dir, staging_dir, swap_in
from graftcv.strategies import STRATEGIES, Strategy

log = logging.getLogger("graftcv")
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece")


@dataclass
class Run:
    """The result of `fit`: where it went, the trained model and what it measured."""

    out_dir: Path
    model: Model
    summary: dict
    config: dict
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Features:
    """Pooled features of the frozen backbone, one row per image of each set (test only for closed-form heads)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None
    stats: FeatureStats
    seconds: float  # wall time getting them, cache reads included


@dataclass(frozen=True)
class Trained:
    network: Classifier
    val_probs: np.ndarray
    history: list[dict]
    epochs: int
    best_epoch: int
    lr_found: float | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict:
    # package metadata, not imports: importing lightning only to read its version costs ~1.7 s
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: installed(name) for name in ("timm", "lightning", "scikit-learn")},
    }


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
        splits, source = (
            discover(data, config.val, config.test, config.val_fraction, config.seed),
            str(Path(data).resolve()),
        )
        warn_skipped(splits.skipped)
    backbone = create_backbone(
        config.model,
        len(splits.classes),
        config.pretrained,
        config.weights,
        drop_rate=config.dropout,
        drop_path_rate=config.drop_path,
        size=config.size,
    )
    model_id = {
        "name": config.model,
        "weights": model_fingerprint(backbone.model, classifier_param_names(backbone.model, True)),
    }
    knobs = strategy.settings(config)
    phases = strategy.plan(knobs)
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
    prepared = Prepared(config, strategy, splits, backbone, model_id, phases, record)
    check_memory(prepared)
    return prepared


def feature_pass(prep: Prepared) -> Features | None:
    """Features of every image some phase trains on (or a closed-form head is fitted on), in one pass."""
    if not needs_feature_pass(prep):
        return None
    config, splits = prep.config, prep.splits
    with_test = prep.strategy.closed_form and splits.test is not None and len(splits.test) > 0
    paths = [*splits.train.paths, *splits.val.paths, *(splits.test.paths if with_test else [])]
    stats, started = FeatureStats(), time.perf_counter()
    every = extract_features(
        prep.backbone.model,
        paths,
        prep.backbone.data_config,
        prep.model_id,
        batch_size=max(config.batch_size, 64),
        num_workers=config.num_workers,
        use_cache=config.cache,
        progress=config.progress,
        description="features",
        stats=stats,
    )
    n_train, n_val = len(splits.train), len(splits.val)
    test = every[n_train + n_val :] if with_test else None
    return Features(every[:n_train], every[n_train : n_train + n_val], test, stats, time.perf_counter() - started)


def targets(prep: Prepared, split: str) -> np.ndarray:
    return np.array(getattr(prep.splits, split).targets(prep.splits.classes))


def train(prep: Prepared, features: Features | None, run_dir: RunDir, resume: bool = False, timing=None) -> Trained:
    """The strategy's head fitted in closed form, or its phases trained; the network ends as the best epoch's."""
    model, n_classes = prep.backbone.model, len(prep.splits.classes)
    if prep.strategy.closed_form:
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
        Classifier(model), outcome.val_probs, outcome.history, outcome.epochs, outcome.best_epoch, outcome.lr_found
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
        "metrics": {k: val_report[k] for k in HEADLINE_METRICS},
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
    else:
        probs, _ = model.predict_proba(test.paths, progress=prep.config.progress)
    report = classification_report(targets(prep, "test"), probs, prep.splits.classes)
    run_dir.write_evaluation("test", report, test, probs, prep.splits.classes)
    return report


def summarize(
    prep: Prepared,
    trained: Trained,
    features: Features | None,
    val: dict,
    test: dict | None,
    run_dir: RunDir,
    seconds: tuple[float, float],
) -> dict:
    splits, stats = prep.splits, features.stats if features is not None else FeatureStats()
    summary = {
        "strategy": prep.config.strategy,
        "model": prep.config.model,
        "weights_source": prep.backbone.weights.source,
        "epochs": trained.epochs,
        "best_epoch": trained.best_epoch,
        "train_seconds": round(seconds[0], 2),
        "wall_seconds": round(seconds[1], 2),
        **{f"val_{k}": val[k] for k in HEADLINE_METRICS},
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test) if splits.test else 0,
        "classes": splits.classes,
        "train_counts": splits.train.counts(),
        "skipped_files": len(splits.skipped),
        "skipped": [p for p, _ in splits.skipped],
        "lr": trained.lr_found if trained.lr_found is not None else prep.record["lr"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "features_computed": stats.computed,
        "features_cached": stats.cached,
        "feature_seconds": round(stats.seconds, 2),
        "feature_stage_seconds": round(features.seconds if features is not None else 0.0, 3),
        "feature_images_per_second": round(stats.images_per_second, 1),
        "feature_runtime": stats.runtime if stats.computed else None,
        "model_dir": str(run_dir.model),
    }
    if test is not None:
        summary |= {f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
    return summary


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
    prep = prepare(data, settings)
    name = "splits" if isinstance(data, DataSplits) else data_name(data)
    final = Path(out) if out else default_run_dir(name, prep.config.strategy)
    with claimed(final):
        # --overwrite is all or nothing: the new run is built beside the old one, which it replaces only whole
        replacing = overwrite and not resume and final.is_dir() and any(final.iterdir())
        work = staging_dir(final) if replacing else final
        if replacing:
            shutil.rmtree(work, ignore_errors=True)  # what an earlier, failed overwrite left
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # read-only, no permission, a file in the way
            raise GraftcvError(f"Cannot write the run to {final}: {error.strerror or error}.") from None
        try:
            run = _run(prep, RunDir(work), final, resume, wall_start)
        except BaseException:
            if replacing:
                shutil.rmtree(work, ignore_errors=True)
                log.warning("%s still holds the previous run: the new one did not finish.", final)
            raise
        if replacing:
            swap_in(work, final)
        return run


def _run(prep: Prepared, run_dir: RunDir, final: Path, resume: bool, wall_start: float) -> Run:
    """Train, evaluate and save into `run_dir`, recording `final` as where the run lives."""
    record = prep.record | {"out": str(final)}
    run_dir.write_config(record)

    timing = plan_time(prep, wall_start)
    train_start = time.perf_counter()
    features = feature_pass(prep)
    trained = train(prep, features, run_dir, resume, timing)
    train_seconds = time.perf_counter() - train_start
    if trained.lr_found is not None:  # --lr auto: the found rate is part of the resolved settings
        record |= {"lr": trained.lr_found, "lr_auto": True}
        run_dir.write_config(record)

    val_report = classification_report(targets(prep, "val"), trained.val_probs, prep.splits.classes)
    run_dir.write_evaluation("val", val_report, prep.splits.val, trained.val_probs, prep.splits.classes)
    model = save(prep, trained, val_report, run_dir)
    test_report = evaluate_test(prep, model, features, run_dir)
    run_dir.write_history(trained.history)
    seconds = (train_seconds, time.perf_counter() - wall_start)
    summary = summarize(prep, trained, features, val_report, test_report, run_dir, seconds)
    summary["model_dir"] = str(RunDir(final).model)
    if timing is not None:
        rates = {"train": round(timing.rates.train, 1), "forward": round(timing.rates.forward, 1)}
        summary |= {
            "budget": prep.config.budget,
            "estimated_seconds": round(timing.estimated_seconds, 1),
            "probe_images_per_second": rates,
        }
    run_dir.write_summary(summary)
    return Run(out_dir=final, model=model, summary=summary, config=record, history=trained.history)


def find_lr(data: DataInput, steps: int = 60, **settings):
    """Learning-rate range test for the main phase of a strategy on this data (Lightning's LR finder)."""
    from graftcv.training.gradient import build_module, make_loaders
    from graftcv.training.lr_find import find_lr as range_test

    strategy = STRATEGIES.lookup(settings.get("strategy", TrainConfig.strategy))
    if strategy.closed_form:  # said before the backbone is built
        raise GraftcvError(f"{strategy.name} has no learning rate: its head is fitted in closed form.")
    prep = prepare(data, settings)
    config = prep.config
    phase = prep.phases[-1]
    features = feature_pass(prep) if phase.on_features else None
    cached = (features.train, features.val) if features is not None else None
    module = build_module(prep.backbone.model, prep.config, targets(prep, "train"), len(prep.splits.classes))
    train_loader, _ = make_loaders(phase, prep.splits, prep.config, prep.backbone.data_config, cached)
    return range_test(
        module,
        phase,
        train_loader,
        num_steps=steps,
        devices=config.devices,
        accelerator=config.accelerator,
        precision=config.precision,
    )
