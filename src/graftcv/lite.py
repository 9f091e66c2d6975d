"""Predicting with an exported model on onnxruntime, numpy and PIL only: no torch."""

from __future__ import annotations

import logging
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from graftcv.data.discovery import list_images, warn_skipped
from graftcv.data.images import load_rgb, to_rgb
from graftcv.data.tasks import Layout
from graftcv.data.transforms import DEFAULT_CROP_PCT, decode_size
from graftcv.errors import GraftcvError
from graftcv.progress import image_progress
from graftcv.runtime import OnnxRunner, has_onnx_export, open_onnx, read_meta

log = logging.getLogger("graftcv")
ImageInput = str | Path | Image.Image | list
INTERPOLATIONS = {  # timm's interpolation names → PIL's filters (what torchvision's Resize uses on PIL images)
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}

# --- timm's evaluation transform (transforms_imagenet_eval) on numpy ------------------------------------------


def _resize(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """torchvision's resize of a PIL image to (height, width): PIL's own, skipped when the size is already right."""
    return image if (image.height, image.width) == size else image.resize((size[1], size[0]), resample)


def _shorter_side(image: Image.Image, side: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes `side`, the longer one truncates."""
    h, w = image.height, image.width
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _keep_ratio(image: Image.Image, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ResizeKeepRatio: scale by the shorter (longest=0) or the longer (longest=1) side's ratio, rounded."""
    ratio_h, ratio_w = image.height / target[0], image.width / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(image.height * 1.0 / ratio), round(image.width * 1.0 / ratio)


def _center_crop(pixels: np.ndarray, size: tuple[int, int], fill: list[int] | int) -> np.ndarray:
    """torchvision's CenterCrop (and timm's CenterCropOrPad): pad with `fill` where the image is smaller, then
    cut the centre, offsets rounded half to even."""
    (height, width), (h, w) = size, pixels.shape[:2]
    if height > h or width > w:
        top, left = max(height - h, 0) // 2, max(width - w, 0) // 2
        bottom, right = max(height - h + 1, 0) // 2, max(width - w + 1, 0) // 2
        padded = np.empty((h + top + bottom, w + left + right, 3), np.uint8)
        padded[...] = np.asarray(fill, np.uint8)
        padded[top : top + h, left : left + w] = pixels
        pixels, (h, w) = padded, padded.shape[:2]
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return pixels[top : top + height, left : left + width]


def preprocess(image: Image.Image, data_config: dict) -> np.ndarray:
    """An image → the (3, H, W) float32 array graftcv's evaluation transform makes of it (timm's
    `create_transform(is_training=False, ...)` with the config's size, interpolation, crop_pct, crop_mode, mean
    and std): resize, centre crop, /255, normalise."""
    size = (int(data_config["input_size"][-2]), int(data_config["input_size"][-1]))
    crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
    mode = data_config.get("crop_mode", "center")
    resample = INTERPOLATIONS.get(data_config["interpolation"])
    if resample is None:
        raise GraftcvError(f"Unknown interpolation {data_config['interpolation']!r} in the model's data config.")
    mean = np.asarray(data_config["mean"], np.float32)[:, None, None]
    std = np.asarray(data_config["std"], np.float32)[:, None, None]
    image = to_rgb(image)
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    fill: list[int] | int = 0
    if mode == "squash":  # each side to 1/crop_pct of the target: the aspect ratio is not kept
        image = _resize(image, scale, resample)
    elif mode == "border":  # the longer side fits, the rest is padded with the mean colour
        image = _resize(image, _keep_ratio(image, scale, longest=1.0), resample)
        fill = [round(255 * v) for v in data_config["mean"]]
    elif scale[0] == scale[1]:
        image = _resize(image, _shorter_side(image, scale[0]), resample)
    else:
        image = _resize(image, _keep_ratio(image, scale, longest=0.0), resample)
    pixels = _center_crop(np.asarray(image), size, fill)
    array = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((array - mean) / std)


def rank(probs: np.ndarray, names: list[str], classes: list[str], topk: int = 1) -> list[dict]:
    """One dict per image, as Model.predict gives: `path`, `class`, `probability`, `top` (the k best)."""
    k = max(1, min(topk, len(classes)))
    results = []
    for name, row in zip(names, probs, strict=True):
        order = np.argsort(-row)[:k]
        top = [{"class": classes[i], "probability": float(row[i])} for i in order]
        results.append({"path": name, "class": top[0]["class"], "probability": top[0]["probability"], "top": top})
    return results


def is_exported(path: str | Path) -> bool:
    """Whether a model directory (or its model.onnx) has an ONNX export recorded in graftcv.json."""
    return Path(path).suffix.lower() == ".onnx" or has_onnx_export(read_meta(path)[1])


RUNTIMES = ("auto", "torch", "onnx")


def choose_runtime(model_dir: str | Path, runtime: str) -> str:
    """torch or onnx: auto means onnx when the model has an export and onnxruntime is installed."""
    from importlib.util import find_spec

    if runtime not in RUNTIMES:
        raise GraftcvError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}.")
    if Path(model_dir).suffix.lower() == ".onnx" or runtime == "onnx":
        return "onnx"
    if runtime == "auto" and is_exported(model_dir) and find_spec("onnxruntime") is not None:
        return "onnx"
    return "torch"


class LitePredictor:
    """An exported model (model.onnx, checked against graftcv.json) that predicts like `graftcv.load(...,
    runtime="onnx")`, with the same results, without importing torch."""

    runtime = "onnx"

    def __init__(self, runner: OnnxRunner, meta: dict) -> None:
        self.runner = runner
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.data_config: dict = meta["data_config"]
        self.tasks: Layout | None = Layout.from_meta(meta.get("tasks"))

    @classmethod
    def open(cls, path: str | Path, threads: int | None = None) -> LitePredictor:
        """A model directory or its model.onnx; `threads` is onnxruntime's thread count (default: every core)."""
        return cls(*open_onnx(path, threads=threads))

    def _load(self, path: Path) -> np.ndarray:
        side = decode_size(self.data_config)
        try:
            image = load_rgb(path, side)
        except (OSError, ValueError) as error:  # checked when listed; one that changed since is a blank image
            warnings.warn(f"Could not read {path} ({error}); using a blank image.", stacklevel=2)
            image = Image.new("RGB", (side, side), (128, 128, 128))
        return preprocess(image, self.data_config)

    def predict_proba(
        self, images: ImageInput, batch_size: int = 32, progress: bool = False
    ) -> tuple[np.ndarray, list[str]]:
        """Class probabilities (n, C) and the name of each image (its path, or its index for PIL images)."""
        items = images if isinstance(images, list) else [images]
        if items and all(isinstance(i, Image.Image) for i in items):
            batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
            probs = [self.runner(np.stack([preprocess(im, self.data_config) for im in b])) for b in batches]
            return np.concatenate(probs), [str(i) for i in range(len(items))]
        paths, skipped = list_images(items)
        warn_skipped(skipped)
        out = []
        with image_progress(progress) as bar, ThreadPoolExecutor(max_workers=min(4, len(paths))) as pool:
            task = bar.add_task("predict", total=len(paths))
            for start in range(0, len(paths), batch_size):
                batch = np.stack(list(pool.map(self._load, paths[start : start + batch_size])))
                out.append(self.runner(batch))
                bar.advance(task, len(batch))
        return np.concatenate(out), [str(p) for p in paths]

    def predict(self, images: ImageInput, topk: int = 1, batch_size: int = 32, progress: bool = False) -> list[dict]:
        """One dict per image: `path`, `class`, `probability`, and `top` (the k best classes)."""
        probs, names = self.predict_proba(images, batch_size=batch_size, progress=progress)
        if self.tasks is not None:  # several labels per image: as `Model.predict` gives them
            return self.tasks.results(probs, names)
        return rank(probs, names, self.classes, topk)
