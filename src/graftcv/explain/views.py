"""What the network sees: the evaluation transform cut into its geometric part and its tensor part."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from torchvision.transforms import Compose

from graftcv.data import build_transform


def split_transform(data_config: dict) -> tuple[Callable, Callable]:
    """(PIL image → the resized, centre-cropped PIL image the network sees, that view → normalized tensor).

    Composing the two gives exactly `build_transform(data_config)`, so a CAM, its image and an annotation
    mask put through the first part line up pixel for pixel.
    """
    steps = list(build_transform(data_config).transforms)
    cut = next((i for i, step in enumerate(steps) if "ToTensor" in type(step).__name__), len(steps))
    return Compose(steps[:cut]), Compose(steps[cut:])


def mask_view(mask: Image.Image, data_config: dict) -> np.ndarray:
    """A binary mask at the original image size → a boolean array aligned with the network's view."""
    geometric, _ = split_transform(data_config)
    return np.asarray(geometric(mask.convert("L"))) >= 128
