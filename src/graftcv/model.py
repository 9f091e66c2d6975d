"""The inference model: `load` a saved artifact (PyTorch or ONNX runtime), then predict, evaluate, explain, save."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from graftcv.artifact import Classifier, build_classifier, read_artifact, read_meta, save_artifact, save_ensemble
from graftcv.data import (
    ImageDataset,
    ImageSet,
    build_transform,
    decode_size,
    inference_workers,
    list_images,
    make_loader,
    read_labelled,
    warn_skipped,
)
from graftcv.data.images import to_rgb
from graftcv.data.shards import is_shard_source, read_manifest
from graftcv.data.tasks import Layout
from graftcv.ensembles import Ensemble
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.evaluation.outputs import outputs_report
from graftcv.lite import RUNTIMES
from graftcv.onnx_forward import CheckedOnnx
from graftcv.progress import image_progress
from graftcv.tta import check_tta, with_tta

log = logging.getLogger("graftcv")
ImageInput = str | Path | Image.Image | list


def default_device(preferred: str | None = None) -> torch.device:
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Model:
    """A trained classifier: `predict` images, `evaluate` on labelled data, `save` as an artifact."""

    def __init__(
        self,
        network: Classifier | None,
        meta: dict,
        device: str | None = None,
        runner: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tta: str | None = None,
    ) -> None:
        """`runner`, when given, turns normalised image batches into probabilities instead of `network`
        (an onnxruntime session, for `load(..., runtime="onnx")`). `tta` (none | flip | flip-crops) averages every
        prediction over flipped (and cropped) views: 2 or 10 forward passes per image; None: the artifact's own
        choice (`tta` in graftcv.json, set by `train --preset`), else none."""
        self.device = default_device(device)
        self.network = None
        if network is not None:
            self.network = network.eval().to(self.device).to(memory_format=torch.channels_last)
        self.runner = runner
        self.runtime = "onnx" if runner is not None else "torch"
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.data_config: dict = meta["data_config"]
        self.tasks: Layout | None = Layout.from_meta(meta.get("tasks"))  # several labels per image
        self.tta = check_tta(tta if tta is not None else meta.get("tta"))

    def _repr_html_(self) -> str:
        from graftcv.notebook import model_html

        return model_html(self.meta, self.runtime, self.tta)

    def _tensors(self, images: list[Image.Image]) -> torch.Tensor:
        transform = build_transform(self.data_config)
        return torch.stack([transform(to_rgb(image)) for image in images])

    @torch.inference_mode()
    def _probs(self, batch: torch.Tensor, fast: CheckedOnnx | None = None) -> torch.Tensor:
        """Probabilities of a normalised batch (through `fast`, an in-memory export, when it agrees), with TTA."""

        def once(images: torch.Tensor) -> torch.Tensor:
            found = fast(images) if fast is not None else None
            if found is not None:
                return found
            if self.runner is not None:
                return self.runner(images)
            images = images.to(self.device).contiguous(memory_format=torch.channels_last)
            return self.network(images).float().cpu()

        return with_tta(once, batch, self.tta)

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
        fast = None
        if self.runner is None and CheckedOnnx.worth_it(self.network, self.device, len(paths)):
            fast = CheckedOnnx(self.network, tuple(self.data_config["input_size"]))
        out = []
        with image_progress(progress) as bar:
            task = bar.add_task("predict", total=len(paths))
            for batch, _ in loader:
                out.append(self._probs(batch, fast))
                bar.advance(task, len(batch))
        return torch.cat(out).numpy(), [str(p) for p in paths]

    def predict(self, images: ImageInput, topk: int = 1, batch_size: int = 32, progress: bool = False) -> list[dict]:
        """One dict per image: `path`, `class`, `probability`, and `top` (the k best classes).

        A multi-label model gives `labels` instead (every label above its threshold, with its probability, most
        probable first) and `probabilities` (every label's); a multi-task one `tasks` (per task, its class and
        probability, or its labels) and `probabilities`."""
        probs, names = self.predict_proba(images, batch_size=batch_size, progress=progress)
        if self.tasks is not None:
            return self.tasks.results(probs, names)
        k = max(1, min(topk, len(self.classes)))
        results = []
        for name, row in zip(names, probs, strict=True):
            order = np.argsort(-row)[:k]
            top = [{"class": self.classes[i], "probability": float(row[i])} for i in order]
            results.append({"path": name, "class": top[0]["class"], "probability": top[0]["probability"], "top": top})
        return results

    def evaluate(self, data: str | Path, batch_size: int = 32, progress: bool = False) -> dict:
        """Metrics on a labelled folder (CLASS/image) or CSV, or on shards (a folder or manifest URL: their test
        split, else their validation split); labels unknown to the model are an error."""
        if is_shard_source(data):
            return self.evaluate_shards(data, batch_size=batch_size, progress=progress)
        if self.tasks is not None:
            from graftcv.data.multi_discovery import read_multi_labelled

            images, skipped = read_multi_labelled(data, self.tasks)
            warn_skipped(skipped)
            report = self.evaluate_images(images, batch_size=batch_size, progress=progress)
            report["skipped_files"] = len(skipped)
            return report
        images, skipped = read_labelled(data)
        warn_skipped(skipped)
        unknown = sorted(set(images.labels) - set(self.classes))
        if unknown:
            raise GraftcvError(f"{data} has classes the model does not know: {', '.join(unknown[:5])}.")
        report = self.evaluate_images(images, batch_size=batch_size, progress=progress)
        report["skipped_files"] = len(skipped)
        return report

    def evaluate_shards(self, source: str | Path, batch_size: int = 32, progress: bool = False) -> dict:
        """Metrics on the test split of a shard set (the validation split without one), streamed shard by shard."""
        manifest = read_manifest(source)
        split = manifest.splits.get("test") or manifest.splits["val"]
        unknown = sorted(label for label, n in split.class_counts.items() if n and label not in self.classes)
        if unknown:
            raise GraftcvError(f"{source} has classes the model does not know: {', '.join(unknown[:5])}.")
        probs, targets = self.stream_proba(split, batch_size=batch_size, progress=progress, with_targets=True)
        report = classification_report(targets, probs, self.classes)
        report["skipped_files"] = 0
        return report

    def stream_proba(self, split, batch_size: int = 32, progress: bool = False, with_targets: bool = False):
        """Class probabilities of every image of a shard split, in the split's order, streamed shard by shard (and
        with `with_targets`, the class index of each image)."""
        from graftcv.data.shard_sets import ordered

        stream = ordered(split, self.classes, build_transform(self.data_config), decode_size(self.data_config), 0, 1)
        loader = make_loader(stream, batch_size, num_workers=inference_workers() if len(split) > batch_size else 0)
        fast = None
        if self.runner is None and CheckedOnnx.worth_it(self.network, self.device, len(split)):
            fast = CheckedOnnx(self.network, tuple(self.data_config["input_size"]))
        probs = np.empty((len(split), len(self.classes)), dtype=np.float32)
        targets = np.empty(len(split), dtype=np.int64)
        with image_progress(progress) as bar:
            task = bar.add_task(f"predict {split.name}", total=len(split))
            for batch, target, positions in loader:
                probs[positions.numpy()] = self._probs(batch, fast).numpy()
                targets[positions.numpy()] = target.numpy()
                bar.advance(task, len(batch))
        return (probs, targets) if with_targets else probs

    def evaluate_images(self, images: ImageSet, batch_size: int = 32, progress: bool = False) -> dict:
        probs, _ = self.predict_proba(images.paths, batch_size=batch_size, progress=progress)
        if self.tasks is not None:
            return outputs_report(self.tasks.targets(images.labels), probs, self.tasks)
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
        from graftcv.explain.pipeline import explain_images

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

    def map(
        self,
        scenes: str | Path | list,
        out: str | Path,
        tile: int,
        stride: int | None = None,
        scale: float = 1.0,
        refine: str | None = None,
        masks: str | Path | list | None = None,
        mask_classes: str | Path | None = None,
        batch_size: int = 32,
        resume: bool = False,
        max_pixels: int | None = None,
        cam_method: str = "gradcam",
        progress: bool = False,
    ) -> dict:
        """Class maps of large scenes, tile by tile (see `graftcv map --help`): per scene under `out`, the class
        index and probabilities as GeoTIFFs, PNG maps, an overlay, class areas and, with `masks`, the map's
        pixel accuracy and IoU; returns what map.json holds."""
        from graftcv.scenes.engine import MapSettings, TileModel
        from graftcv.scenes.reader import DEFAULT_MAX_PIXELS
        from graftcv.scenes.run import map_scenes

        if refine not in (None, "cam"):
            raise GraftcvError(f"Unknown --refine {refine!r}: the one refinement is 'cam'.")
        refiner = None
        if refine == "cam":
            if self.network is None:
                raise GraftcvError("--refine cam needs the PyTorch model: load it with runtime='torch' or explainable.")
            from graftcv.scenes.refine import cam_refiner

            refiner = cam_refiner(self.network, self.data_config, cam_method)

        def probabilities(tiles: list[np.ndarray]) -> np.ndarray:
            return self._probs(self._tensors([Image.fromarray(t) for t in tiles])).numpy()

        settings = MapSettings(tile, stride or tile, float(scale), refine, batch_size, max_pixels or DEFAULT_MAX_PIXELS)
        fingerprint = hashlib.sha256(json.dumps(self.meta, sort_keys=True, default=str).encode()).hexdigest()[:16]
        items = scenes if isinstance(scenes, list) else [scenes]
        mask_list = None if masks is None else [Path(m) for m in (masks if isinstance(masks, list) else [masks])]
        return map_scenes(
            TileModel(self.classes, probabilities, refiner), [Path(s) for s in items], Path(out), settings,
            fingerprint, self.runtime, mask_list, Path(mask_classes) if mask_classes else None, resume, progress,
        )  # fmt: skip

    def save(self, path: str | Path) -> Path:
        if self.network is None:
            raise GraftcvError("A model loaded with runtime='onnx' cannot be saved; load it with runtime='torch'.")
        meta = {k: v for k, v in self.meta.items() if k not in ("probe", "onnx")}  # an export belongs to its files
        if isinstance(self.network, Ensemble):
            return save_ensemble(path, self.network, meta, meta.pop("members"))
        return save_artifact(path, self.network.backbone, meta, self.network.probe)


def load(
    path: str | Path,
    device: str | None = None,
    runtime: str = "torch",
    threads: int | None = None,
    explainable: bool = False,
    tta: str | None = None,
) -> Model:
    """A saved model directory (model.safetensors + graftcv.json); never unpickles anything.

    `runtime="onnx"` (or a path to model.onnx) runs the exported model.onnx with onnxruntime; `"auto"` does so
    when the model has been exported. `explainable=True` loads the PyTorch network beside an ONNX runtime, so
    that `explain` works too (what `graftcv serve` needs); `threads` is onnxruntime's thread count. `tta` averages
    each prediction over flipped views (flip: 2 passes per image) or flipped corner and centre crops (flip-crops:
    10); None keeps the model's own choice."""
    if runtime not in RUNTIMES:
        raise GraftcvError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}.")
    if Path(path).suffix.lower() == ".onnx":
        runtime = "onnx"
    elif runtime == "auto":
        runtime = "onnx" if isinstance(read_meta(path)[1].get("onnx"), dict) else "torch"
    if runtime == "torch":
        tensors, meta = read_artifact(path)
        return Model(build_classifier(tensors, meta), meta, device=device, tta=tta)
    from graftcv.runtime import open_onnx

    runner, meta = open_onnx(path, threads=threads)
    network = build_classifier(*read_artifact(path)) if explainable else None
    return Model(network, meta, device=device, runner=runner, tta=tta)
