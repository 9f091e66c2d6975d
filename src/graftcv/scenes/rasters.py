"""The map's rasters, written strip by strip as tiled GeoTIFFs (the scene's georeference copied): the class
index (one band) and the class probabilities (one uint8 band per class, probability × 255)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from graftcv.scenes.reader import Georef

BLOCK = 256  # GeoTIFF tile side; strips are written in whole block rows, so no compressed block is rewritten
CLASS_INDEX = "class_index.tif"
PROBABILITIES = "probabilities.tif"


def _profile(height: int, width: int, bands: int, georef: Georef | None) -> dict:
    profile = dict(
        driver="GTiff", height=height, width=width, count=bands, dtype="uint8", compress="deflate",
        tiled=True, blockxsize=BLOCK, blockysize=BLOCK, BIGTIFF="IF_SAFER",
    )  # fmt: skip
    if georef is not None:
        profile |= {"crs": georef.crs, "transform": georef.transform}
    return profile


def _open(path: Path | str, mode: str, **profile):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a scene without georeference: plain TIFFs
        return rasterio.open(path, mode, **profile)


class MapRasters:
    """Finished rows go in with `add` (top row, (C, h, W) probabilities); whole block rows go out to disk and
    come back as (top, class index rows, probability rows) for the scores. `finish` writes the rest."""

    def __init__(self, folder: Path, height: int, width: int, classes: list[str], georef: Georef | None,
                 resume_from: int = 0) -> None:  # fmt: skip
        self.height, self.width, self.classes = height, width, classes
        mode = "r+" if resume_from else "w"
        extra = {} if resume_from else _profile(height, width, 1, georef)
        self.index = _open(folder / CLASS_INDEX, mode, **extra)
        extra = {} if resume_from else _profile(height, width, len(classes), georef)
        self.probs = _open(folder / PROBABILITIES, mode, **extra)
        if not resume_from:
            self.index.set_band_description(1, "class index: " + ", ".join(f"{i}={c}" for i, c in enumerate(classes)))
            for band, name in enumerate(classes, start=1):
                self.probs.set_band_description(band, f"P({name}) x 255")
        self.written = resume_from
        self.pending: list[np.ndarray] = []

    def add(self, probabilities: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        self.pending.append(probabilities)
        rows = sum(p.shape[1] for p in self.pending)
        whole = rows if self.written + rows == self.height else (rows // BLOCK) * BLOCK
        return [self._write(whole)] if whole else []

    def finish(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        rows = sum(p.shape[1] for p in self.pending)
        return [self._write(rows)] if rows else []

    def _write(self, rows: int) -> tuple[int, np.ndarray, np.ndarray]:
        from rasterio.windows import Window

        stacked = np.concatenate(self.pending, axis=1)
        chunk, rest = stacked[:, :rows], stacked[:, rows:]
        self.pending = [rest] if rest.shape[1] else []
        index = chunk.argmax(0).astype(np.uint8)
        quantized = np.rint(np.clip(chunk, 0.0, 1.0) * 255).astype(np.uint8)
        window = Window(0, self.written, self.width, rows)
        self.index.write(index[None], window=window)
        self.probs.write(quantized, window=window)
        top, self.written = self.written, self.written + rows
        return top, index, quantized

    def flush(self) -> None:
        """Push what is written to the files (before the resume point is recorded)."""
        self.index.close()
        self.probs.close()
        self._reopen()

    def _reopen(self) -> None:
        self.index = _open(self.index.name, "r+")
        self.probs = _open(self.probs.name, "r+")

    def close(self) -> None:
        self.index.close()
        self.probs.close()
