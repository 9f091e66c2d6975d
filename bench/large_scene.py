"""An 8192 × 8192 px tiled GeoTIFF for the memory benchmark of `graftcv map`: the dubai_aerial scenes of tiles
5–6, each resized to 1024 px, repeated over an 8 × 8 grid, written block row by block row (never whole), with a
UTM georeference (EPSG:32640, 0.5 m pixels) so the outputs' georeference can be checked too.

    python bench/large_scene.py --out bench/out/large_scene.tif
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=repo.parent / "shared" / "datasets" / "dubai_aerial")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grid", type=int, default=8)
    args = parser.parse_args()
    sources = sorted((args.data / "images").glob("tile[56]_image_part_*.jpg"))
    pieces = [np.asarray(Image.open(p).convert("RGB").resize((1024, 1024))) for p in sources]
    side = 1024 * args.grid
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", tiled=True, blockxsize=256,
                   blockysize=256, compress="jpeg", photometric="ycbcr", crs=CRS.from_epsg(32640),
                   transform=from_origin(350000.0, 2790000.0, 0.5, 0.5), BIGTIFF="IF_SAFER")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(args.out, "w", **profile) as raster:
        for row in range(args.grid):
            strip = np.concatenate([pieces[(row * args.grid + col) % len(pieces)] for col in range(args.grid)], 1)
            raster.write(strip.transpose(2, 0, 1), window=Window(0, row * 1024, side, 1024))
    print(f"wrote {args.out}: {side} × {side} px")


if __name__ == "__main__":
    main()
