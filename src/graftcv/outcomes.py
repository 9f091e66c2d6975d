"""What a run produces: the `Run` that `fit` returns, its intermediate values, and the summary written last."""

from __future__ import annotations

import platform
import resource
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from graftcv import distributed
from graftcv.artifact import Classifier
from graftcv.evaluation.outputs import headline
from graftcv.features import FeatureStats
from graftcv.model import Model
from graftcv.planning import Prepared
from graftcv.rundir import RunDir


@dataclass
class Run:
    """The result of `fit`: where it went, the trained model and what it measured."""

    out_dir: Path
    model: Model | None
    summary: dict
    config: dict
    history: list[dict] = field(default_factory=list)
    rank: int = 0  # under DDP, the ranks other than 0 return their run with no model and no summary

    def _repr_html_(self) -> str:
        from graftcv.notebook import run_html

        return run_html(self.summary, self.out_dir)


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
    snapshots: object | None = None  # --snapshots: training's EpochStates (cycle ends, best epochs)


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


def image_epoch_rate(prep: Prepared, history: list[dict]) -> float | None:
    """Training images per second of the epochs on images (validation included; all ranks together)."""
    on_images = {p.name for p in prep.phases if not p.on_features}
    seconds, epochs, previous = 0.0, 0, 0.0
    for row in history:
        if row["phase"] in on_images:
            seconds, epochs = seconds + row["seconds"] - previous, epochs + 1
        previous = row["seconds"]
    return round(epochs * len(prep.splits.train) / seconds, 2) if seconds > 0 else None


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
        **{f"val_{k}": v for k, v in headline(val).items()},
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test) if splits.test else 0,
        "classes": splits.classes,
        "train_counts": splits.train.counts(),
        "skipped_files": len(splits.skipped),
        "skipped": [p for p, _ in splits.skipped],
        "lr": trained.lr_found if trained.lr_found is not None else prep.record["lr"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "world_size": distributed.size(),
        "image_epoch_images_per_second": image_epoch_rate(prep, trained.history),
        "features_computed": stats.computed,
        "features_cached": stats.cached,
        "feature_seconds": round(stats.seconds, 2),
        "feature_stage_seconds": round(features.seconds if features is not None else 0.0, 3),
        "feature_images_per_second": round(stats.images_per_second, 1),
        "feature_runtime": stats.runtime if stats.computed else None,
        "model_dir": str(run_dir.model),
    }
    if test is not None and "headline" in test:
        summary |= {f"test_{k}": v for k, v in headline(test).items()}
    elif test is not None:
        summary |= {f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
    if splits.tasks is not None:
        summary |= {"kind": splits.tasks.kind, "tasks": splits.tasks.as_meta()}
    return summary
