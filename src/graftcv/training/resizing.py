"""Progressive resizing: fine-tuning epochs that grow from a small input size to the full training size."""

from __future__ import annotations

# fastai's progressive resizing starts ImageNet training at 128 of 224 px (4/7). Each early epoch costs about
# 0.4x (128 px) to 0.8x (208 px) of a full-size one on EfficientNet-Lite0 (bench/RESULTS.md, issue 15), and
# the last epoch at the full size leaves no train/test resolution gap in the final weights.
START_RATIO = 4 / 7
MULTIPLE = 16
MIN_SIZE = 32


def epoch_sizes(full: int, epochs: int) -> tuple[int, ...]:
    """Input size per epoch: a straight ramp from 4/7 of `full` (multiples of 16, at least 32 px) up to `full`,
    which the last epoch always trains at; a single epoch, or a size too small to shrink, trains at `full`."""
    start = max(MIN_SIZE, round(full * START_RATIO / MULTIPLE) * MULTIPLE)
    if epochs < 2 or start >= full:
        return (full,) * max(epochs, 0)
    ramp = [start + (full - start) * i / (epochs - 1) for i in range(epochs - 1)]
    return (*(min(full, round(s / MULTIPLE) * MULTIPLE) for s in ramp), full)


def planned_sizes(progressive: bool, full: int, epochs: int) -> tuple[int, ...]:
    """Each epoch's training size: the ramp with progressive resizing, else `full` throughout."""
    return epoch_sizes(full, epochs) if progressive else (full,) * epochs


def relative_cost(sizes: tuple[int, ...], full: int, small_rate: float, full_rate: float, small: int) -> float:
    """Mean seconds per training image over `sizes` as a share of one at `full`, from rates measured at `small`
    and `full` px, interpolated linearly in pixel count (a step's cost is a fixed part plus one per pixel)."""
    if not sizes:
        return 1.0
    per_image_full, per_image_small = 1.0 / full_rate, 1.0 / small_rate
    span = full * full - small * small
    total = 0.0
    for size in sizes:
        share = 1.0 if span <= 0 else (size * size - small * small) / span
        total += per_image_small + (per_image_full - per_image_small) * share
    return total / len(sizes) / per_image_full
