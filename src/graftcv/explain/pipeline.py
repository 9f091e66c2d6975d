"""From images to CAM results, and from CAM results to quality scores: what `Model.explain` and `--score` run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from graftcv.data import load_rgb
from graftcv.data.discovery import list_images
from graftcv.data.images import to_rgb
from graftcv.errors import GraftcvError
from graftcv.explain.annotations import read_boxes, read_masks
from graftcv.explain.cams import CamExplainer
from graftcv.explain.quality import (
    FAITHFULNESS_KEYS,
    LOCALIZATION_KEYS,
    ROAD_PERCENTILES,
    faithfulness_scores,
    localization_scores,
    summarize,
)
from graftcv.explain.views import mask_view, split_transform

log = logging.getLogger("graftcv")
TARGET_KEYWORDS = ("pred", "true")


@dataclass
class CamResult:
    """One image's class activation map, aligned pixel for pixel with the image as the network saw it."""

    name: str  # the image's path, or its position for in-memory images
    image: np.ndarray  # (H, W, 3) uint8: resized and centre-cropped as for prediction
    cam: np.ndarray  # (H, W) float32 in [0, 1]
    predicted: str
    probability: float
    target: str  # the class the map explains
    target_probability: float
    label: str | None  # the true class when known (from the image's folder or `labels`)
    method: str
    layer: str


def load_inputs(
    images: str | Path | Image.Image | list, classes: list[str]
) -> tuple[list[str], list[Image.Image], list[str | None]]:
    """Names, RGB images and known labels of paths, folders or PIL images; a file's label is its folder
    name when that is one of the model's classes."""
    items = images if isinstance(images, list) else [images]
    if items and all(isinstance(item, Image.Image) for item in items):
        return [str(i) for i in range(len(items))], [to_rgb(item) for item in items], [None] * len(items)
    if any(isinstance(item, Image.Image) for item in items):
        raise GraftcvError("Pass either image paths or PIL images, not a mix of both.")
    paths, skipped = list_images(items)
    if skipped:
        log.warning("Skipped %d file(s) that are not usable images.", len(skipped))
    known = set(classes)
    labels = [p.parent.name if p.parent.name in known else None for p in paths]
    return [str(p) for p in paths], [load_rgb(p) for p in paths], labels


def resolve_target(target: str, classes: list[str]) -> str | int:
    """'pred', 'true', or the index of a class named by the user."""
    if target in TARGET_KEYWORDS:
        return target
    if target in classes:
        return classes.index(target)
    raise GraftcvError(f"Unknown target {target!r}: use pred, true or one of the classes {', '.join(classes)}.")


def explain_images(
    classifier: nn.Module,
    data_config: dict,
    classes: list[str],
    images: str | Path | Image.Image | list,
    method: str = "gradcam",
    target: str = "pred",
    layer: str | None = None,
    labels: list[str | None] | None = None,
    batch_size: int = 8,
) -> list[CamResult]:
    """CAMs of `target` ('pred', 'true' or a class name) for each image, `batch_size` images at a time."""
    wanted = resolve_target(target, classes)
    explainer = CamExplainer(classifier, tuple(data_config["input_size"]), method, layer)
    names, pictures, found_labels = load_inputs(images, classes)
    if labels is not None:
        if len(labels) != len(names):
            raise GraftcvError(f"Got {len(labels)} labels for {len(names)} images.")
        unknown = sorted({label for label in labels if label is not None and label not in classes})
        if unknown:
            raise GraftcvError(f"Labels unknown to the model: {', '.join(unknown[:5])}.")
        found_labels = list(labels)
    if wanted == "true" and any(label is None for label in found_labels):
        raise GraftcvError(
            "--target true needs each image's class: put the images in folders named after the model's classes "
            f"({', '.join(classes)}) or pass labels."
        )
    geometric, tensorize = split_transform(data_config)
    results: list[CamResult] = []
    for start in range(0, len(pictures), batch_size):
        views = [geometric(picture) for picture in pictures[start : start + batch_size]]
        batch = torch.stack([tensorize(view) for view in views])
        probs = explainer.probabilities(batch).numpy()
        chunk_labels = found_labels[start : start + batch_size]
        predicted = probs.argmax(1)
        if wanted == "pred":
            targets = predicted.tolist()
        elif wanted == "true":
            targets = [classes.index(label) for label in chunk_labels]
        else:
            targets = [wanted] * len(views)
        cams = explainer.compute(batch, targets)
        for i, view in enumerate(views):
            results.append(
                CamResult(
                    name=names[start + i],
                    image=np.asarray(view, dtype=np.uint8),
                    cam=cams[i],
                    predicted=classes[predicted[i]],
                    probability=float(probs[i, predicted[i]]),
                    target=classes[targets[i]],
                    target_probability=float(probs[i, targets[i]]),
                    label=chunk_labels[i],
                    method=method,
                    layer=explainer.layer_name,
                )
            )
    return results


def annotation_masks(
    results: list[CamResult], data_config: dict, masks: str | Path | None = None, boxes: str | Path | None = None
) -> list[np.ndarray] | None:
    """Boolean object masks aligned with each result's CAM, from a mask folder or a box CSV (or None)."""
    if masks is None and boxes is None:
        return None
    if masks is not None and boxes is not None:
        raise GraftcvError("Give object annotations either as --masks or as --boxes, not both.")
    if any(not Path(r.name).is_file() for r in results):
        raise GraftcvError("Localization scores need image files: masks and boxes are matched by file name.")
    names = [r.name for r in results]
    originals = read_masks(masks, names) if masks is not None else read_boxes(boxes, names)
    return [mask_view(mask, data_config) for mask in originals]


def score_results(
    classifier: nn.Module,
    data_config: dict,
    classes: list[str],
    results: list[CamResult],
    masks: list[np.ndarray] | None = None,
    percentiles: tuple[int, ...] = ROAD_PERCENTILES,
    batch_size: int = 8,
    seed: int = 0,
) -> dict:
    """Faithfulness (and localization, given masks) of each CAM and of a random CAM on the same layer,
    per image, per target class and overall. Seeded: ROAD's imputation noise and the random CAM are random."""
    if not results:
        raise GraftcvError("No CAMs to score.")
    if masks is not None and len(masks) != len(results):
        raise GraftcvError(f"Got {len(masks)} masks for {len(results)} images.")
    baseline = CamExplainer(classifier, tuple(data_config["input_size"]), "random", results[0].layer)
    _, tensorize = split_transform(data_config)
    rows: list[dict] = []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)  # RandomCAM draws its channel weights from numpy's global generator
            for start in range(0, len(results), batch_size):
                chunk = results[start : start + batch_size]
                batch = torch.stack([tensorize(Image.fromarray(r.image)) for r in chunk])
                targets = [classes.index(r.target) for r in chunk]
                cams = np.stack([r.cam for r in chunk]).astype(np.float32)
                random_cams = baseline.compute(batch, targets)
                measured = faithfulness_scores(baseline.network, batch, cams, targets, percentiles)
                random = faithfulness_scores(baseline.network, batch, random_cams, targets, percentiles)
                for i, result in enumerate(chunk):
                    row = {"image": result.name, "target": result.target, "label": result.label}
                    row |= {"predicted": result.predicted, "probability": result.probability}
                    row |= {key: float(measured[key][i]) for key in FAITHFULNESS_KEYS}
                    row |= {f"random_{key}": float(random[key][i]) for key in FAITHFULNESS_KEYS}
                    if masks is not None:
                        mask = masks[start + i]
                        row |= localization_scores(result.cam, mask)
                        row |= {f"random_{k}": v for k, v in localization_scores(random_cams[i], mask).items()}
                    rows.append(row)
    finally:
        np.random.set_state(numpy_state)
    keys = FAITHFULNESS_KEYS + (LOCALIZATION_KEYS if masks is not None else ())
    summary = summarize(rows, keys + tuple(f"random_{key}" for key in keys))
    return {
        "method": results[0].method,
        "layer": results[0].layer,
        "road_percentiles": list(percentiles),
        "n": len(rows),
        **summary,
        "images": rows,
    }
