"""Test-time augmentation: class probabilities averaged over flipped (and cropped) views of each image, via ttach."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from graftcv.errors import GraftcvError

if TYPE_CHECKING:  # torch is imported when augmenting: the CLI's help and option checks do without it
    import torch

# Forward passes per image of each mode: what TTA multiplies the cost of a prediction by.
TTA_MODES = {"none": 1, "flip": 2, "flip-crops": 10}
CROP_FRACTION = 0.875  # each of the five crops keeps this share of the side, then is resized back to the input


def check_tta(mode: str | None) -> str:
    mode = mode or "none"
    if mode not in TTA_MODES:
        raise GraftcvError(f"Unknown --tta {mode!r}: choose one of {', '.join(TTA_MODES)}.")
    return mode


def views(mode: str, size: tuple[int, int]):
    """ttach's composition of the mode's transforms (None for no augmentation)."""
    import ttach

    if mode == "flip":
        return ttach.Compose([ttach.HorizontalFlip()])
    if mode == "flip-crops":
        crop = (max(1, round(size[0] * CROP_FRACTION)), max(1, round(size[1] * CROP_FRACTION)))
        return ttach.Compose([ttach.HorizontalFlip(), ttach.FiveCrops(*crop)])
    return None


def with_tta(probabilities: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of `probabilities` over the mode's views of `batch` (crops resized back to the batch's size, so a
    fixed-size ONNX model takes them too)."""
    import torch.nn.functional as F

    composed = views(mode, tuple(batch.shape[-2:]))
    if composed is None:
        return probabilities(batch)
    total = None
    for transformer in composed:
        view = transformer.augment_image(batch)
        if view.shape[-2:] != batch.shape[-2:]:
            view = F.interpolate(view, size=tuple(batch.shape[-2:]), mode="bilinear", align_corners=False)
        probs = probabilities(view.contiguous())
        total = probs if total is None else total + probs
    return total / len(composed)
