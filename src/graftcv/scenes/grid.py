"""Where the tiles of a scene go, and the smooth window that blends overlapping tiles (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from graftcv.errors import GraftcvError

MIN_TILE = 16  # smaller tiles hold too little of the scene to classify, whatever the network's input size
WINDOW_FLOOR = 1e-3  # the window's weight at a tile's edge: a scene border covered by one tile edge stays defined


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one side: every `stride` pixels, the last one moved back so the tile ends at the
    border, so that every pixel is covered and no tile reaches outside the scene."""
    if length < tile:
        raise GraftcvError(f"A side of {length} px is smaller than one {tile} px tile.")
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] != length - tile:
        origins.append(length - tile)
    return origins


def check_tiling(tile: int, stride: int) -> None:
    if tile < MIN_TILE:
        raise GraftcvError(f"--tile {tile} is too small to classify: use tiles of at least {MIN_TILE} px.")
    if stride < 1 or stride > tile:
        raise GraftcvError(
            f"--stride {stride} must be between 1 and the tile size ({tile} px): a larger stride leaves gaps."
        )


@dataclass(frozen=True)
class Grid:
    """The tiles of a height × width scene: `rows` and `cols` are the tiles' top and left offsets."""

    height: int
    width: int
    tile: int
    stride: int

    @property
    def rows(self) -> list[int]:
        return tile_origins(self.height, self.tile, self.stride)

    @property
    def cols(self) -> list[int]:
        return tile_origins(self.width, self.tile, self.stride)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


@cache
def blend_window(tile: int, overlapping: bool) -> np.ndarray:
    """(tile, tile) float32 weights of one tile's votes: flat without overlap; with overlap a Hann window
    (highest at the centre, where the network sees most context), which at stride = tile/2 sums to a constant
    over the scene, so the blend has no seams."""
    if not overlapping:
        return np.ones((tile, tile), np.float32)
    side = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    side = np.maximum(side, WINDOW_FLOOR).astype(np.float32)
    return np.outer(side, side)
