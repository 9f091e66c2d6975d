"""A map against its ground-truth mask: mask values → the model's classes, a confusion matrix accumulated strip
by strip, pixel accuracy, per-class IoU and mIoU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graftcv.errors import GraftcvError

IGNORED = -1


def read_mask_classes(path: Path) -> list[str]:
    """Class names by mask value: a JSON list, {"classes": [...]} (as in dubai_aerial), or {"VALUE": "name"}."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise GraftcvError(f"Cannot read the mask classes {path}: {error}.") from None
    if isinstance(data, dict) and isinstance(data.get("classes"), list):
        data = data["classes"]
    if isinstance(data, dict):
        try:
            table = {int(value): str(name) for value, name in data.items()}
        except ValueError:
            raise GraftcvError(f"{path}: the keys of a mask-class table must be mask values (0, 1, ...).") from None
        return [table.get(value, "") for value in range(max(table) + 1)]
    if isinstance(data, list) and all(isinstance(name, str) for name in data):
        return list(data)
    raise GraftcvError(f"{path} should hold a list of class names, {{'classes': [...]}} or {{'VALUE': 'name'}}.")


def mask_classes_for(mask: Path, given: Path | None) -> list[str]:
    """The given table, else classes.json in the mask's folder or beside that folder (dubai_aerial's layout)."""
    if given is not None:
        return read_mask_classes(given)
    for path in (mask.parent / "classes.json", mask.parent.parent / "classes.json"):
        if path.is_file():
            return read_mask_classes(path)
    raise GraftcvError(f"No classes.json beside {mask}: pass --mask-classes FILE (the class name of each mask value).")


def value_lookup(mask_classes: list[str], classes: list[str]) -> np.ndarray:
    """(256,) int: the model's class index of each mask value, or IGNORED for values it does not know."""
    lookup = np.full(256, IGNORED, np.int64)
    for value, name in enumerate(mask_classes[:256]):
        if name in classes:
            lookup[value] = classes.index(name)
    if (lookup == IGNORED).all():
        raise GraftcvError(
            f"None of the mask's classes ({', '.join(n for n in mask_classes if n)}) is a class of the model "
            f"({', '.join(classes)}): nothing to score."
        )
    return lookup


def add_confusion(confusion: np.ndarray, truth: np.ndarray, predicted: np.ndarray, lookup: np.ndarray) -> None:
    """Count (true, predicted) pixel pairs into `confusion` (C, C); mask values the model does not know are left
    out."""
    true = lookup[truth.astype(np.int64).clip(0, 255)]
    kept = true != IGNORED
    n = confusion.shape[0]
    confusion += np.bincount(true[kept] * n + predicted[kept].astype(np.int64), minlength=n * n).reshape(n, n)


def map_scores(confusion: np.ndarray, classes: list[str]) -> dict:
    """Pixel accuracy, IoU per class (classes absent from both mask and map have none) and their mean."""
    confusion = np.asarray(confusion, np.int64)
    total = int(confusion.sum())
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    iou = {c: (float(inter[i] / union[i]) if union[i] else None) for i, c in enumerate(classes)}
    present = [v for v in iou.values() if v is not None]
    return {
        "pixels_scored": total,
        "pixel_accuracy": float(inter.sum() / total) if total else None,
        "miou": float(np.mean(present)) if present else None,
        "iou": iou,
        "true_pixels": {c: int(confusion[i].sum()) for i, c in enumerate(classes)},
        "mapped_pixels": {c: int(confusion[:, i].sum()) for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
    }
