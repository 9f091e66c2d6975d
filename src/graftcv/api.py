"""The public API: `fit` a classifier on labelled images, `load` a saved one, then predict and evaluate."""

from __future__ import annotations

import csv
import json
import logging
import platform
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from graftcv.artifact import Classifier, build_classifier, read_artifact, save_artifact
from graftcv.backbones import Backbone, classifier_param_names, create_backbone
from graftcv.config import TrainConfig
from graftcv.data import (
    DataSplits,
    ImageDataset,
    ImageSet,
    build_transform,
    decode_size,
    discover,
    inference_workers,
    make_loader,
)
from graftcv.data.discovery import list_images, read_labelled
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report, write_report
from graftcv.features import FeatureStats, extract_features, model_fingerprint
from graftcv.heads import fit_probe, fit_prototype
from graftcv.progress import image_progress
from graftcv.strategies import DEFAULTS, FEATURE_HEAD_STRATEGIES, Phase, StrategySettings, plan

log = logging.getLogger("graftcv")
ImageInput = str | Path | Image.Image | list


def _versions() -> dict:
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


def _device(preferred: str | None = None) -> torch.device:
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        names = "; ".join(f"{Path(p).name} ({reason})" for p, reason in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        log.warning("Skipped %d file(s) that are not usable images: %s%s.", len(skipped), names, more)


class Model:
    """A trained classifier: `predict` images, `evaluate` on labelled data, `save` as an artifact."""

    def __init__(
        self,
        network: Classifier | None,
        meta: dict,
        device: str | None = None,
        runner: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """`runner`, when given, turns normalised image batches into probabilities instead of `network`
        (an onnxruntime session, for `load(..., runtime="onnx")`)."""
        self.device = _device(device)
        self.network = None
        if network is not None:
            self.network = network.eval().to(self.device).to(memory_format=torch.channels_last)
        self.runner = runner
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.data_config: dict = meta["data_config"]

    def _tensors(self, images: list[Image.Image]) -> torch.Tensor:
        transform = build_transform(self.data_config)
        return torch.stack([transform(image.convert("RGB")) for image in images])

    @torch.inference_mode()
    def _probs(self, batch: torch.Tensor) -> torch.Tensor:
        if self.runner is not None:
            return self.runner(batch)
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.network(batch).float().cpu()

    def predict_proba(
        self, images: ImageInput, batch_size: int = 32, progress: bool = False, num_workers: int | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Class probabilities (n, C) and the name of each image (its path, or its index for PIL images)."""
        items = images if isinstance(images, list) else [images]
        if items and all(isinstance(i, Image.Image) for i in items):
            probs = [self._probs(self._tensors(items[i : i + batch_size])) for i in range(0, len(items), batch_size)]
            return torch.cat(probs).numpy(), [str(i) for i in range(len(items))]
        paths, skipped = list_images(items)
        warn_skipped(skipped)
        dataset = ImageDataset(paths, None, build_transform(self.data_config), draft_size=decode_size(self.data_config))
        workers = 0 if len(paths) <= batch_size else (inference_workers() if num_workers is None else num_workers)
        loader = make_loader(dataset, batch_size=batch_size, num_workers=workers)
        out = []
        with image_progress(progress) as bar:
            task = bar.add_task("predict", total=len(paths))
            for batch, _ in loader:
                out.append(self._probs(batch))
                bar.advance(task, len(batch))
        return torch.cat(out).numpy(), [str(p) for p in paths]

    def predict(self, images: ImageInput, topk: int = 1, batch_size: int = 32, progress: bool = False) -> list[dict]:
        """One dict per image: `path`, `class`, `probability`, and `top` (the k best classes)."""
        probs, names = self.predict_proba(images, batch_size=batch_size, progress=progress)
        k = max(1, min(topk, len(self.classes)))
        results = []
        for name, row in zip(names, probs, strict=True):
            order = np.argsort(-row)[:k]
            top = [{"class": self.classes[i], "probability": float(row[i])} for i in order]
            results.append({"path": name, "class": top[0]["class"], "probability": top[0]["probability"], "top": top})
        return results

    def evaluate(self, data: str | Path, batch_size: int = 32, progress: bool = False) -> dict:
        """Metrics on a labelled folder (CLASS/image) or CSV; labels unknown to the model are an error."""
        images, skipped = read_labelled(data)
        warn_skipped(skipped)
        unknown = sorted(set(images.labels) - set(self.classes))
        if unknown:
            raise GraftcvError(f"{data} has classes the model does not know: {', '.join(unknown[:5])}.")
        report = self.evaluate_images(images, batch_size=batch_size, progress=progress)
        report["skipped_files"] = len(skipped)
        return report

    def evaluate_images(self, images: ImageSet, batch_size: int = 32, progress: bool = False) -> dict:
        probs, _ = self.predict_proba(images.paths, batch_size=batch_size, progress=progress)
        return classification_report(np.array(images.targets(self.classes)), probs, self.classes)

    def explain(
        self,
        images: ImageInput,
        method: str = "gradcam",
        target: str = "pred",
        layer: str | None = None,
        labels: list[str | None] | None = None,
        batch_size: int = 8,
    ) -> list:
        """Class activation maps, one `CamResult` per image: `image` (H, W, 3) uint8 as the network saw it,
        `cam` (H, W) in [0, 1], `predicted`, `probability`, `target` (pred, true or a class name)."""
        from graftcv.explain import explain_images

        if self.network is None:
            raise GraftcvError("CAMs need the PyTorch model: load it with runtime='torch', not 'onnx'.")
        return explain_images(
            self.network, self.data_config, self.classes, images, method, target, layer, labels, batch_size
        )

    def score_explanations(
        self, results: list, masks: str | Path | None = None, boxes: str | Path | None = None
    ) -> dict:
        """CAM quality of `explain` results: ROAD and confidence change against a random CAM, and with
        `masks` (folder of binary masks) or `boxes` (path,x0,y0,x1,y1 CSV) pointing game, energy inside, IoU."""
        from graftcv.explain.pipeline import annotation_masks, score_results

        objects = annotation_masks(results, self.data_config, masks, boxes)
        return score_results(self.network, self.data_config, self.classes, results, objects)

    def save(self, path: str | Path) -> Path:
        if self.network is None:
            raise GraftcvError("A model loaded with runtime='onnx' cannot be saved; load it with runtime='torch'.")
        probe = self.network.probe
        meta = {k: v for k, v in self.meta.items() if k not in ("probe", "onnx")}  # an export belongs to its files
        return save_artifact(path, self.network.backbone, meta, probe)


def load(path: str | Path, device: str | None = None, runtime: str = "torch") -> Model:
    """A saved model directory (model.safetensors + graftcv.json); never unpickles anything.

    `runtime="onnx"` (or a path to model.onnx) runs the exported model.onnx with onnxruntime instead."""
    if runtime == "onnx" or Path(path).suffix.lower() == ".onnx":
        from graftcv.runtime import open_onnx

        runner, meta = open_onnx(path)
        return Model(None, meta, runner=runner)
    if runtime != "torch":
        raise GraftcvError(f"Unknown runtime {runtime!r}: choose torch or onnx.")
    tensors, meta = read_artifact(path)
    return Model(build_classifier(tensors, meta), meta, device=device)


@dataclass
class Run:
    """The result of `fit`: where it went, the trained model and what it measured."""

    out_dir: Path
    model: Model
    summary: dict
    config: dict
    history: list[dict] = field(default_factory=list)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def _write_history(path: Path, rows: list[dict]) -> None:
    columns = ["phase", "epoch", "train_loss", "val_loss", "val_acc", "lr", "trainable_groups", "seconds"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_predictions(path: Path, images: ImageSet, probs: np.ndarray, classes: list[str]) -> None:
    """One row per image: path, true label, predicted label, its probability, then every class's."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "predicted", "probability", *classes])
        for image, label, row in zip(images.paths, images.labels, probs, strict=True):
            best = int(np.argmax(row))
            writer.writerow([str(image), label, classes[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])


def default_out_dir(data: str | Path, strategy: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(str(data)).resolve().name or 'data'}-{strategy}-{stamp}"


@dataclass
class _Prepared:
    """What every training entry point needs before the first step: data, backbone, plan."""

    config: TrainConfig
    splits: DataSplits
    backbone: Backbone
    model_id: dict
    phases: list[Phase]
    resolved: dict

    feature_stats: FeatureStats = field(default_factory=FeatureStats)
    test_features: np.ndarray | None = None
    feature_stage_seconds: float = 0.0  # wall time getting features, cache reads included

    def features(self, paths: list[Path], label: str) -> np.ndarray:
        config = self.config
        started = time.perf_counter()
        try:
            return self._extract(paths, label, config)
        finally:
            self.feature_stage_seconds += time.perf_counter() - started

    def _extract(self, paths: list[Path], label: str, config: TrainConfig) -> np.ndarray:
        return extract_features(
            self.backbone.model,
            paths,
            self.backbone.data_config,
            self.model_id,
            batch_size=max(config.batch_size, 64),
            num_workers=config.num_workers,
            use_cache=config.cache,
            progress=config.progress,
            description=label,
            stats=self.feature_stats,
        )

    def cached_features(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Train and val features when some phase trains on them (or the strategy is a probe), in one pass."""
        if self.config.strategy not in FEATURE_HEAD_STRATEGIES and not any(p.on_features for p in self.phases):
            return None
        n_train, n_val = len(self.splits.train), len(self.splits.val)
        paths = [*self.splits.train.paths, *self.splits.val.paths]
        with_test = self.config.strategy in FEATURE_HEAD_STRATEGIES and self.splits.test is not None
        if with_test:  # a probe's test evaluation needs only features: same pass, same cache
            paths += self.splits.test.paths
        every = self.features(paths, "features")
        if with_test:
            self.test_features = every[n_train + n_val :]
        return every[:n_train], every[n_train : n_train + n_val]


def _prepare(data: str | Path, settings: dict) -> _Prepared:
    unknown = set(settings) - TrainConfig.field_names()
    if unknown:
        raise GraftcvError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    config = TrainConfig(**settings).validate()
    _seed(config.seed)
    splits = discover(data, config.val, config.test, config.val_fraction, config.seed)
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
    model = backbone.model
    model_id = {"name": config.model, "weights": model_fingerprint(model, classifier_param_names(model, True))}
    default_epochs, default_lr = DEFAULTS.get(config.strategy, (0, 0.0))
    epochs = config.epochs or default_epochs
    lr = default_lr if config.lr in (None, "auto") else float(config.lr)
    phases = plan(
        config.strategy,
        StrategySettings(
            epochs=epochs,
            head_epochs=config.head_epochs,
            lr=lr,
            head_lr=config.head_lr,
            lr_decay=config.lr_decay,
            unfreeze=config.unfreeze,
            unfreeze_every=config.unfreeze_every,
            augment=config.augment,
        ),
    )
    resolved = config.to_dict() | {
        "data": str(Path(data).resolve()),
        "data_config": backbone.data_config,
        "weights_source": {"kind": backbone.weights.source, "detail": backbone.weights.detail},
        "epochs": epochs,
        "lr": config.lr if config.lr == "auto" else lr,
        "phases": [phase.__dict__ for phase in phases],
    }
    return _Prepared(config, splits, backbone, model_id, phases, resolved)


def _recorded_settings(out: Path, data: str | Path | None, settings: dict) -> tuple[str, dict]:
    """The data and settings of the unfinished run in `out`, which a resumed run must keep."""
    if (out / "summary.json").exists():
        raise GraftcvError(f"{out} holds a finished run: there is nothing to resume.")
    if not (out / "config.json").is_file():
        raise GraftcvError(f"{out} holds no run to resume (config.json is missing).")
    recorded = json.loads((out / "config.json").read_text())
    kept = {k: v for k, v in recorded.items() if k in TrainConfig.field_names()}
    changed = sorted(k for k, v in settings.items() if k in kept and v != kept[k] and k not in ("progress",))
    if changed:
        raise GraftcvError(f"A resumed run keeps its settings; drop {', '.join(changed)} or start a new run.")
    if data is not None and Path(data).resolve() != Path(recorded["data"]):
        raise GraftcvError(f"{out} was trained on {recorded['data']}, not {Path(data).resolve()}.")
    return recorded["data"], kept | {k: v for k, v in settings.items() if k == "progress"}


def fit(
    data: str | Path | None,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    **settings,
) -> Run:
    """Train a classifier on the labelled images in `data` and save it under `out`.

    Settings are `TrainConfig`'s fields (strategy, model, epochs, lr, augment, ...), e.g.
    `fit("photos/", strategy="linear-probe", head="svm")`. A finished run already in `out` is kept
    unless `overwrite` is set. `resume=True` continues the unfinished run in `out` (killed, say) from its
    last finished epoch, with the data and settings recorded there.
    """
    wall_start = time.perf_counter()
    if resume:
        if out is None:
            raise GraftcvError("Resuming needs the run directory (--resume OUT).")
        data, settings = _recorded_settings(Path(out), data, settings)
    elif out and (Path(out) / "summary.json").exists() and not overwrite:
        raise GraftcvError(f"{out} already holds a finished run: choose another --out, or pass --overwrite.")
    if data is None:
        raise GraftcvError("No data given: pass a folder of labelled images or a path,label CSV.")
    prep = _prepare(data, settings)
    config, splits, backbone, resolved = prep.config, prep.splits, prep.backbone, prep.resolved
    model = backbone.model
    out_dir = Path(out) if out else default_out_dir(data, config.strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved["out"] = str(out_dir)
    _write_json(out_dir / "config.json", resolved | {"data_summary": splits.describe()})

    train_start = time.perf_counter()
    y_train = np.array(splits.train.targets(splits.classes))
    y_val = np.array(splits.val.targets(splits.classes))
    history: list[dict] = []
    cached = prep.cached_features()
    if config.strategy in FEATURE_HEAD_STRATEGIES:
        train_x, val_x = cached
        if config.strategy == "prototype":
            probe = fit_prototype(train_x, y_train, len(splits.classes))
        else:
            probe = fit_probe(config.head, train_x, y_train, len(splits.classes), seed=config.seed, pca=config.pca)
        val_probs = probe(torch.from_numpy(np.array(val_x))).numpy()
        model.reset_classifier(0)
        network, epochs_run, best_epoch = Classifier(model, probe), 0, 0
    else:
        from graftcv.training.gradient import train_phases

        outcome = train_phases(
            model, prep.phases, splits, config, backbone.data_config, cached, out_dir / "checkpoints", resume
        )
        history, val_probs, epochs_run, best_epoch = (
            outcome.history,
            outcome.val_probs,
            outcome.epochs,
            outcome.best_epoch,
        )
        if outcome.lr_found is not None:
            resolved["lr"], resolved["lr_auto"] = outcome.lr_found, True
        network = Classifier(model)
    train_seconds = time.perf_counter() - train_start

    report = classification_report(y_val, val_probs, splits.classes)
    write_report(report, out_dir, prefix="val_")
    write_predictions(out_dir / "val_predictions.csv", splits.val, val_probs, splits.classes)
    meta = {
        "backbone": config.model,
        "classes": splits.classes,
        "data_config": backbone.data_config,
        "strategy": config.strategy,
        "head": {"linear-probe": config.head, "prototype": "prototype"}.get(config.strategy),
        "weights_source": {"kind": backbone.weights.source, "detail": backbone.weights.detail},
        "metrics": {k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece")},
        "versions": _versions(),
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    save_artifact(out_dir / "model", network.backbone, meta, network.probe)
    trained = Model(network, meta)
    test_report = None
    if splits.test is not None and len(splits.test):
        if prep.test_features is not None:
            test_probs = network.probe(torch.from_numpy(np.array(prep.test_features))).numpy()
        else:
            test_probs, _ = trained.predict_proba(splits.test.paths, progress=config.progress)
        test_report = classification_report(np.array(splits.test.targets(splits.classes)), test_probs, splits.classes)
        write_report(test_report, out_dir, prefix="test_")
        write_predictions(out_dir / "test_predictions.csv", splits.test, test_probs, splits.classes)
    _write_history(out_dir / "metrics.csv", history)
    _write_json(out_dir / "config.json", resolved | {"data_summary": splits.describe()})
    summary = {
        "strategy": config.strategy,
        "model": config.model,
        "weights_source": backbone.weights.source,
        "epochs": epochs_run,
        "best_epoch": best_epoch,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - wall_start, 2),
        "val_accuracy": report["accuracy"],
        "val_balanced_accuracy": report["balanced_accuracy"],
        "val_macro_f1": report["macro_f1"],
        "val_log_loss": report["log_loss"],
        "val_ece": report["ece"],
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test) if splits.test else 0,
        "classes": splits.classes,
        "train_counts": splits.train.counts(),
        "skipped_files": len(splits.skipped),
        "skipped": [p for p, _ in splits.skipped],
        "lr": resolved["lr"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "features_computed": prep.feature_stats.computed,
        "features_cached": prep.feature_stats.cached,
        "feature_seconds": round(prep.feature_stats.seconds, 2),
        "feature_stage_seconds": round(prep.feature_stage_seconds, 3),
        "feature_images_per_second": round(prep.feature_stats.images_per_second, 1),
        "model_dir": str(out_dir / "model"),
    }
    if test_report is not None:
        summary["test_accuracy"], summary["test_macro_f1"] = test_report["accuracy"], test_report["macro_f1"]
        summary["test_balanced_accuracy"] = test_report["balanced_accuracy"]
    _write_json(out_dir / "summary.json", summary)
    return Run(out_dir=out_dir, model=trained, summary=summary, config=resolved, history=history)


__all__ = ["DataSplits", "Model", "Run", "fit", "load"]


def find_lr(data: str | Path, steps: int = 60, **settings):
    """Learning-rate range test for the main phase of a strategy on this data (Lightning's LR finder)."""
    from graftcv.training.gradient import build_module, make_loaders
    from graftcv.training.lr_find import find_lr as range_test

    if settings.get("strategy") in FEATURE_HEAD_STRATEGIES:
        how = "the class centroids of its features" if settings["strategy"] == "prototype" else "fitted by scikit-learn"
        raise GraftcvError(f"{settings['strategy']} has no learning rate: its head is {how}.")
    prep = _prepare(data, settings)
    config, splits = prep.config, prep.splits
    phase = prep.phases[-1]
    cached = prep.cached_features() if phase.on_features else None
    targets = np.array(splits.train.targets(splits.classes))
    module = build_module(prep.backbone.model, config, targets, len(splits.classes))
    train_loader, _ = make_loaders(phase, splits, config, prep.backbone.data_config, cached)
    return range_test(
        module,
        phase,
        train_loader,
        num_steps=steps,
        devices=config.devices,
        accelerator=config.accelerator,
        precision=config.precision,
    )
