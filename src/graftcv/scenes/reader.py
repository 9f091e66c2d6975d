"""Scenes and masks read window by window: (Geo)TIFF and other rasters through rasterio, JPEG/PNG through PIL
up to a pixel limit; `scale` resamples on the fly, so the whole image is never held at once."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from graftcv.errors import GraftcvError

RASTER_SUFFIXES = {".tif", ".tiff", ".gtiff", ".vrt", ".jp2", ".img"}
DEFAULT_MAX_PIXELS = 100_000_000  # a JPEG/PNG is decoded whole: 100 Mpx of RGB is 300 MB
GDAL_CACHE_MB = 128  # GDAL's block cache (default: 5% of the RAM) bounds what a windowed read keeps


@dataclass
class Georef:
    """Where a raster lies on Earth: its CRS and affine transform (rasterio objects), copied to the outputs."""

    crs: object
    transform: object


class Scene:
    """A raster of `height` × `width` pixels (after `scale`), read by window: RGB uint8 for scenes, one band of
    class indices for masks."""

    path: Path
    height: int
    width: int
    georef: Georef | None = None

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    def thumbnail(self, max_side: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _scaled(size: int, scale: float) -> int:
    return max(1, int(round(size * scale)))


def _thumb_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    factor = min(1.0, max_side / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


class PilScene(Scene):
    """A JPEG/PNG (or any PIL format), decoded whole on the first read (sizes and modes are known before)."""

    def __init__(self, path: Path, image: Image.Image, scale: float, mask: bool) -> None:
        if mask and image.mode not in ("L", "P", "I;16", "I"):
            raise GraftcvError(f"{path} is a {image.mode} image: a mask must be one band of class indices.")
        self.path, self.mask, self.scale = path, mask, scale
        self.height, self.width = _scaled(image.height, scale), _scaled(image.width, scale)
        self._pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            limit = Image.MAX_IMAGE_PIXELS
            try:
                Image.MAX_IMAGE_PIXELS = None  # max_pixels was checked when the scene was opened
                with Image.open(self.path) as image:
                    pixels = np.asarray(image if self.mask else image.convert("RGB"))
            except (OSError, ValueError, SyntaxError) as error:
                raise GraftcvError(f"Cannot decode {self.path}: {error}.") from None
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            if pixels.shape[:2] != (self.height, self.width):
                resample = Image.Resampling.NEAREST if self.mask else Image.Resampling.BILINEAR
                pixels = np.asarray(Image.fromarray(pixels).resize((self.width, self.height), resample))
            self._pixels = pixels
        return self._pixels

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        return self.pixels[top : top + height, left : left + width]

    def thumbnail(self, max_side: int) -> np.ndarray:
        height, width = _thumb_shape(self.height, self.width, max_side)
        resample = Image.Resampling.NEAREST if self.mask else Image.Resampling.BOX
        return np.asarray(Image.fromarray(self.pixels).resize((width, height), resample))

    def close(self) -> None:
        self._pixels = None


class RasterScene(Scene):
    """A rasterio dataset, read by window (tiled or striped TIFF/GeoTIFF read only the blocks a window needs)."""

    def __init__(self, path: Path, scale: float, mask: bool) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.path, self.scale, self.mask = path, scale, mask
        self.env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self.env.__enter__()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a plain TIFF is fine: maps stay plain
                self.dataset = rasterio.open(path)
        except RasterioIOError as error:
            self.env.__exit__(None, None, None)
            raise GraftcvError(f"Cannot read {path} as a raster: {str(error).splitlines()[0]}.") from None
        ds = self.dataset
        if any(dtype != "uint8" for dtype in ds.dtypes) and not mask:
            self.close()
            raise GraftcvError(
                f"{path} holds {ds.dtypes[0]} pixels: graftcv maps 8-bit RGB scenes (convert it first, e.g. "
                "`gdal_translate -ot Byte -scale IN OUT`)."
            )
        if mask and ds.count != 1:
            self.close()
            raise GraftcvError(f"{path} has {ds.count} bands: a mask must be one band of class indices.")
        self.bands = [1] if mask else ([1, 1, 1] if ds.count < 3 else [1, 2, 3])
        self.height, self.width = _scaled(ds.height, scale), _scaled(ds.width, scale)
        if ds.crs is not None or not ds.transform.is_identity:
            from rasterio.transform import Affine

            self.georef = Georef(ds.crs, ds.transform @ Affine.scale(ds.width / self.width, ds.height / self.height))

    def _resampling(self):
        from rasterio.enums import Resampling

        return Resampling.nearest if self.mask or self.scale == 1.0 else Resampling.bilinear

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        from rasterio.windows import Window

        fy, fx = self.dataset.height / self.height, self.dataset.width / self.width
        window = Window(left * fx, top * fy, width * fx, height * fy)
        pixels = self.dataset.read(
            self.bands, window=window, out_shape=(len(self.bands), height, width), resampling=self._resampling()
        )
        return pixels[0] if self.mask else np.ascontiguousarray(pixels.transpose(1, 2, 0))

    def thumbnail(self, max_side: int) -> np.ndarray:
        from rasterio.enums import Resampling

        height, width = _thumb_shape(self.height, self.width, max_side)
        resampling = Resampling.nearest if self.mask else Resampling.average
        pixels = self.dataset.read(self.bands, out_shape=(len(self.bands), height, width), resampling=resampling)
        return pixels[0] if self.mask else np.ascontiguousarray(pixels.transpose(1, 2, 0))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.dataset.close()
        self.env.__exit__(None, None, None)


def open_scene(path: str | Path, scale: float = 1.0, max_pixels: int = DEFAULT_MAX_PIXELS, mask: bool = False) -> Scene:
    """A scene (RGB) or, with `mask`, a raster of class indices; one sentence when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise GraftcvError(f"{path} does not exist or is not a file.")
    if not 0 < scale <= 16:
        raise GraftcvError(f"--scale {scale} must be above 0 (1 keeps the scene's resolution; at most 16).")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return RasterScene(path, scale, mask)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the limit that applies is max_pixels, checked before decoding
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise GraftcvError(
                    f"{path} has {image.width * image.height:,} pixels, above the limit of {max_pixels:,} for "
                    "JPEG/PNG scenes (decoded whole): raise --max-pixels, or convert it to a tiled GeoTIFF "
                    "(`gdal_translate -co TILED=YES IN OUT.tif`), which is read window by window."
                )
            image.verify()
        with Image.open(path) as image:
            return PilScene(path, image, scale, mask)
    except (OSError, SyntaxError, ValueError) as error:
        try:
            return RasterScene(path, scale, mask)
        except GraftcvError:
            raise GraftcvError(f"Cannot read {path} as an image or raster: {error}.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
