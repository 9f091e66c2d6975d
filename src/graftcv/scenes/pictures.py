"""The map's pictures: the colour class map with its legend, the class index as a one-band PNG, per-class
probability maps and an overlay on the downscaled scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from graftcv.atomic import replacing
from graftcv.scenes.rasters import CLASS_INDEX, PROBABILITIES

PREVIEW_SIDE = 2048  # the overlay and the probability maps are drawn at most this large
# Conventional land-cover colours for the usual names; any other class takes the next colour of tab20.
NAMED_COLOURS = {
    "water": (31, 119, 180), "sealake": (31, 119, 180), "river": (80, 170, 230),
    "vegetation": (44, 160, 44), "forest": (20, 110, 30), "pasture": (150, 210, 90),
    "herbaceousvegetation": (120, 190, 60), "annualcrop": (230, 210, 80), "permanentcrop": (190, 150, 40),
    "building": (214, 39, 40), "residential": (214, 39, 40), "industrial": (150, 60, 160),
    "road": (127, 127, 127), "highway": (100, 100, 100), "land": (222, 184, 135), "unlabeled": (0, 0, 0),
}  # fmt: skip
TAB20 = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
]  # fmt: skip


def class_colours(classes: list[str]) -> list[tuple[int, int, int]]:
    colours, spare = [], iter(TAB20 * (len(classes) // len(TAB20) + 1))
    for name in classes:
        key = "".join(ch for ch in name.lower() if ch.isalnum())
        colour = NAMED_COLOURS.get(key)
        colours.append(colour if colour is not None and colour not in colours else next(spare))
    return colours


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


WHITE, BLACK = 254, 255  # palette entries of the legend's background and text in the class map


def legend(classes: list[str], fills: list, width: int, mode: str = "RGB") -> Image.Image:
    """A band `width` px wide with one swatch and name per class: RGB (fills are colours) or, in mode P, palette
    indices (fills are class indices; WHITE and BLACK are the background and the text)."""
    size = max(12, min(28, width // 60))
    font = _font(size)
    cell = size * 2 + max(len(c) for c in classes) * size * 0.6
    per_row = max(1, int(width // cell))
    rows = -(-len(classes) // per_row)
    white, black = ("white", "black") if mode == "RGB" else (WHITE, BLACK)
    band = Image.new(mode, (width, int(rows * size * 1.8 + size * 0.6)), white)
    draw = ImageDraw.Draw(band)
    for i, (name, fill) in enumerate(zip(classes, fills, strict=True)):
        x, y = int(i % per_row * cell + size * 0.4), int(i // per_row * size * 1.8 + size * 0.4)
        draw.rectangle([x, y, x + size, y + size], fill=fill, outline=black)
        draw.text((x + size * 1.4, y - size * 0.1), name, fill=black, font=font)
    return band


def _save_png(image: Image.Image, path: Path) -> Path:
    with replacing(path) as staging:
        image.save(staging, format="PNG", optimize=False)
    return path


def render_pictures(folder: Path, scene_thumbnail: np.ndarray, classes: list[str]) -> dict[str, str]:
    """class_map.png (colours + legend), class_index.png, overlay.png and probability_<class>.png from the map's
    rasters in `folder`; reads the class index band whole (1 byte per pixel)."""
    from rasterio.enums import Resampling

    from graftcv.scenes.rasters import _open as open_raster

    colours = class_colours(classes)
    palette = [v for colour in colours for v in colour]
    written = {}
    with open_raster(folder / CLASS_INDEX, "r") as raster:
        index = raster.read(1)
    written["class_index"] = str(_save_png(Image.fromarray(index, mode="L"), folder / "class_index.png"))
    # One byte per pixel all the way: the map and its legend share one palette (a large scene stays small).
    key = legend(classes, list(range(len(classes))), index.shape[1], mode="P")
    sheet = Image.new("P", (index.shape[1], index.shape[0] + key.height), WHITE)
    sheet.putpalette(palette + [0] * (3 * WHITE - len(palette)) + [255, 255, 255, 0, 0, 0])
    sheet.paste(Image.fromarray(index, mode="P"), (0, 0))
    sheet.paste(key, (0, index.shape[0]))
    written["class_map"] = str(_save_png(sheet, folder / "class_map.png"))
    del sheet
    height, width = scene_thumbnail.shape[:2]
    small = np.asarray(Image.fromarray(index).resize((width, height), Image.Resampling.NEAREST))
    del index
    tinted = np.asarray(colours, np.float32)[small]
    blended = (0.55 * scene_thumbnail.astype(np.float32) + 0.45 * tinted).astype(np.uint8)
    key = legend(classes, colours, width)
    overlay = Image.new("RGB", (width, height + key.height), "white")
    overlay.paste(Image.fromarray(blended), (0, 0))
    overlay.paste(key, (0, height))
    written["overlay"] = str(_save_png(overlay, folder / "overlay.png"))
    with open_raster(folder / PROBABILITIES, "r") as raster:
        for band, name in enumerate(classes, start=1):
            probability = raster.read(band, out_shape=(height, width), resampling=Resampling.average)
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
            path = _save_png(Image.fromarray(probability, mode="L"), folder / f"probability_{safe}.png")
            written[f"probability_{name}"] = str(path)
    return written
