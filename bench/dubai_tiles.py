"""Cut labelled tiles from dubai_aerial scenes: what a user with scene masks does to train a tile classifier.

Each scene of tiles 1–4 (``tileT_image_part_NNN.jpg`` with its mask ``masks/…png``) is cut into non-overlapping
``--tile`` px squares. A square's label is its majority mask class when that class covers at least
``--majority`` of it; squares without a clear majority (mixed land cover) are dropped, and so are squares whose
majority is ``unlabeled`` or unmapped (255): they teach no land-cover class. Parts 1–7 of each tile go to
``OUT/train``, parts 8–9 to ``OUT/val``, so validation tiles never touch a training scene. Tiles 5–6 are left
alone: they are the scenes to map.

    python bench/dubai_tiles.py --out bench/out/dubai_tiles
    graftcv train bench/out/dubai_tiles/train --val bench/out/dubai_tiles/val --size 128 --out runs/dubai
    graftcv map runs/dubai/model ../shared/datasets/dubai_aerial/images/tile5_*.jpg --tile 64 \
        --mask ../shared/datasets/dubai_aerial/masks --out runs/dubai-maps
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

IGNORED_CLASSES = {"unlabeled"}


def parse_args() -> argparse.Namespace:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=repo.parent / "shared" / "datasets" / "dubai_aerial")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--majority", type=float, default=0.6, help="share of the tile its label must cover")
    parser.add_argument("--tiles", default="1,2,3,4", help="which of the dataset's tiles to cut from")
    parser.add_argument("--val-parts", default="8,9", help="parts of each tile that go to validation")
    return parser.parse_args()


def cut(image: np.ndarray, mask: np.ndarray, size: int, majority: float, names: list[str]):
    """(label, y, x, pixels) of every square with a clear majority class."""
    for y in range(0, mask.shape[0] - size + 1, size):
        for x in range(0, mask.shape[1] - size + 1, size):
            counts = np.bincount(mask[y : y + size, x : x + size].ravel(), minlength=256)
            value = int(counts.argmax())
            if counts[value] < majority * size * size or value >= len(names) or names[value] in IGNORED_CLASSES:
                continue
            yield names[value], y, x, image[y : y + size, x : x + size]


def main() -> None:
    args = parse_args()
    names = json.loads((args.data / "classes.json").read_text())["classes"]
    val_parts = {int(p) for p in args.val_parts.split(",")}
    counts: dict[str, Counter] = {"train": Counter(), "val": Counter()}
    for tile in (int(t) for t in args.tiles.split(",")):
        for image_path in sorted((args.data / "images").glob(f"tile{tile}_image_part_*.jpg")):
            part = int(image_path.stem.rsplit("_", 1)[1])
            split = "val" if part in val_parts else "train"
            image = np.asarray(Image.open(image_path).convert("RGB"))
            mask = np.asarray(Image.open(args.data / "masks" / f"{image_path.stem}.png"))
            for label, y, x, pixels in cut(image, mask, args.tile, args.majority, names):
                folder = args.out / split / label
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f"{image_path.stem}_{y:04d}_{x:04d}.png")
                counts[split][label] += 1
    for split, found in counts.items():
        print(f"{split}: {sum(found.values())} tiles", dict(sorted(found.items())))


if __name__ == "__main__":
    main()
