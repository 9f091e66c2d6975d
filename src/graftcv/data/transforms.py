"""Preprocessing and augmentation presets on timm's transform factory."""

from __future__ import annotations

import math
from collections.abc import Callable

from graftcv.errors import GraftcvError

DEFAULT_CROP_PCT = 0.875  # timm's, for a data config without one

AUGMENT_PRESETS: dict[str, dict] = {
    "none": {},
    "light": {"scale": (0.25, 1.0), "hflip": 0.5, "color_jitter": 0.0},
    "strong": {
        "scale": (0.08, 1.0),
        "hflip": 0.5,
        "color_jitter": 0.4,
        # mmax9: timm clips sampled magnitudes at 10, where PosterizeIncreasing keeps 0 bits, which recent
        # Pillow (13 here) rejects mid-epoch; capping at 9 keeps at least 1 bit and changes nothing else visibly.
        "auto_augment": "rand-m9-mstd0.5-inc1-mmax9",
        "re_prob": 0.25,
    },
}


def decode_size(data_config: dict) -> int:
    """Shortest side the evaluation transform resizes to (input size / crop_pct): JPEG draft decoding may
    scale down to it but not below, so reduced-size decoding never upsamples what the model sees."""
    return math.ceil(data_config["input_size"][-1] / data_config.get("crop_pct", 1.0))


def build_transform(data_config: dict, augment: str = "none", train: bool = False) -> Callable:
    """The image → tensor transform for a backbone's data config (size, interpolation, mean/std, crop)."""
    from timm.data import create_transform  # here, so that decode_size and the presets import no timm

    if augment not in AUGMENT_PRESETS:
        raise GraftcvError(f"Unknown augmentation {augment!r}: choose one of {', '.join(AUGMENT_PRESETS)}.")
    base = {
        "input_size": data_config["input_size"],
        "interpolation": data_config["interpolation"],
        "mean": data_config["mean"],
        "std": data_config["std"],
        "crop_pct": data_config["crop_pct"],
        "crop_mode": data_config.get("crop_mode", "center"),
    }
    if not train or augment == "none":
        return create_transform(**base, is_training=False)
    preset = dict(AUGMENT_PRESETS[augment])
    if preset.get("color_jitter") == 0.0:
        preset["color_jitter"] = None  # timm would otherwise add a do-nothing ColorJitter
    return create_transform(**base, **preset, is_training=True)
