"""`--refine cam`: each tile's class decision sharpened to sub-tile resolution with its class activation maps.

Inside a tile, the k most probable classes share the tile's probability mass by where their CAMs are strong:
P(c | pixel) ∝ P(c | tile) · (FLOOR + cam_c(pixel)), the other classes keep P(c | tile) · FLOOR. Where every CAM
is flat this is the tile's own decision; a less probable class wins only where its map is strong and the
leading class's is weak."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional

from graftcv.data.transforms import DEFAULT_CROP_PCT
from graftcv.explain.cams import CamExplainer
from graftcv.explain.views import split_transform

TOP_CLASSES = 3  # CAMs are computed for this many classes per tile: one backward pass each
FLOOR = 0.25  # a class's weight where its CAM is zero, relative to where it is strongest (1 + FLOOR)


def view_region(tile: int, data_config: dict) -> tuple[int, int]:
    """(offset, side) in tile pixels of the square the network sees of a square tile after the evaluation
    transform (resize to input / crop_pct, centre crop to the input size)."""
    side = int(data_config["input_size"][-1])
    resized = int(side / (data_config.get("crop_pct") or DEFAULT_CROP_PCT))
    offset = int(round(int(round((resized - side) / 2.0)) * tile / resized))
    return offset, max(1, min(tile - offset, int(round(side * tile / resized))))


def cam_refiner(
    network: nn.Module, data_config: dict, method: str = "gradcam", top: int = TOP_CLASSES
) -> Callable[[list[np.ndarray], np.ndarray], np.ndarray]:
    """tiles (T, T, 3) uint8 and their (n, C) probabilities → (n, C, T, T) per-pixel probabilities."""
    explainer = CamExplainer(network, tuple(data_config["input_size"]), method)
    geometric, tensorize = split_transform(data_config)

    def refine(tiles: list[np.ndarray], probabilities: np.ndarray) -> np.ndarray:
        tile, n_classes = tiles[0].shape[0], probabilities.shape[1]
        offset, side = view_region(tile, data_config)
        batch = torch.stack([tensorize(geometric(Image.fromarray(t))) for t in tiles])
        leading = np.argsort(-probabilities, axis=1)[:, : min(top, n_classes)]
        weights = np.full((len(tiles), n_classes, tile, tile), FLOOR, np.float32)
        rows = np.arange(len(tiles))
        for rank in range(leading.shape[1]):
            cams = torch.from_numpy(explainer.compute(batch, leading[:, rank].tolist()))[:, None]
            cams = functional.interpolate(cams, size=(side, side), mode="bilinear", align_corners=False)
            pad = (offset, tile - side - offset, offset, tile - side - offset)
            cams = functional.pad(cams, pad, mode="replicate")[:, 0].numpy()
            weights[rows, leading[:, rank]] += cams
        pixel = probabilities[:, :, None, None].astype(np.float32) * weights
        return pixel / pixel.sum(1, keepdims=True).clip(min=1e-12)

    return refine
