"""Object annotations for localization scores: binary mask files or a CSV of boxes, matched to images."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

from graftcv.data import load_rgb
from graftcv.errors import GraftcvError

MASK_SUFFIXES = {".png", ".bmp", ".gif", ".tif", ".tiff", ".jpg", ".jpeg", ".webp", ".pgm", ".ppm"}


def _find_mask(mask_dir: Path, by_stem: dict[str, list[Path]], image: Path) -> Path | None:
    """The mask with the image's file name (any image suffix); its class folder decides between namesakes."""
    candidates = by_stem.get(image.stem, [])
    if len(candidates) > 1:
        candidates = [c for c in candidates if c.parent.name == image.parent.name] or candidates
    return candidates[0] if candidates else None


def read_masks(mask_dir: str | Path, images: list[str]) -> list[Image.Image]:
    """One binary mask per image (mode L, the image's own size) from files with the same names under `mask_dir`."""
    mask_dir = Path(mask_dir).expanduser()
    if not mask_dir.is_dir():
        raise GraftcvError(f"Mask folder {mask_dir} does not exist.")
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(mask_dir.rglob("*")):
        if path.is_file() and path.suffix.lower() in MASK_SUFFIXES:
            by_stem[path.stem].append(path)
    masks, missing = [], []
    for name in images:
        image_path = Path(name)
        found = _find_mask(mask_dir, by_stem, image_path)
        if found is None:
            missing.append(image_path.name)
            continue
        mask = Image.open(found).convert("L")
        size = load_rgb(image_path).size
        if mask.size != size:
            raise GraftcvError(f"Mask {found} is {mask.size[0]}×{mask.size[1]} but its image is {size[0]}×{size[1]}.")
        masks.append(mask.point(lambda v: 255 if v >= 128 else 0))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise GraftcvError(f"No mask in {mask_dir} for {len(missing)} image(s): {', '.join(missing[:3])}{more}.")
    return masks


def _read_box_rows(csv_path: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    rows = []
    with csv_path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                rows.append((row[0].strip(), tuple(float(v) for v in row[1:5])))
            except (ValueError, IndexError):
                if number == 1:
                    continue  # the header
                raise GraftcvError(f"{csv_path} line {number} is not path,x0,y0,x1,y1.") from None
            if len(rows[-1][1]) != 4:
                raise GraftcvError(f"{csv_path} line {number} is not path,x0,y0,x1,y1.")
    return rows


def read_boxes(csv_path: str | Path, images: list[str]) -> list[Image.Image]:
    """One binary mask per image drawn from its boxes (path,x0,y0,x1,y1 in pixels; several rows are a union).

    A row's path may be absolute, relative to the CSV, or a bare file name.
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise GraftcvError(f"Box file {csv_path} does not exist.")
    boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for path, box in _read_box_rows(csv_path):
        resolved = Path(path) if Path(path).is_absolute() else (csv_path.parent / path)
        boxes[str(resolved.resolve())].append(box)
        boxes[Path(path).name].append(box)
    masks, missing = [], []
    for name in images:
        image_path = Path(name)
        found = boxes.get(str(image_path.resolve())) or boxes.get(image_path.name)
        if not found:
            missing.append(image_path.name)
            continue
        mask = Image.new("L", load_rgb(image_path).size, 0)
        draw = ImageDraw.Draw(mask)
        for x0, y0, x1, y1 in found:
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1) - 1, max(y0, y1) - 1], fill=255)
        masks.append(mask)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise GraftcvError(f"No box in {csv_path} for {len(missing)} image(s): {', '.join(missing[:3])}{more}.")
    return masks
