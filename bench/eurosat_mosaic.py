"""EuroSAT as a mapping case: a training folder, and a mosaic scene of held-out tiles whose layout is known.

Per class, a seeded 20% of the 64 px tiles is held out; the rest is linked into ``OUT/train/CLASS/``. The scene
``OUT/mosaic.png`` is a grid of ``--blocks`` × ``--blocks`` blocks, each block 2 × 2 held-out tiles of one class
(so regions are larger than one tile, as land cover is), with ``OUT/mosaic_mask.png`` (class indices) and
``OUT/classes.json`` beside it.

    python bench/eurosat_mosaic.py --out bench/out/eurosat_map
    graftcv train bench/out/eurosat_map/train --strategy linear-probe --out runs/eurosat
    graftcv map runs/eurosat/model bench/out/eurosat_map/mosaic.png --tile 64 \
        --mask bench/out/eurosat_map/mosaic_mask.png --out runs/eurosat-map
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=repo.parent / "shared" / "datasets" / "eurosat")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    held: dict[str, list[Path]] = {}
    for name in classes:
        files = sorted((args.data / name).glob("*.jpg"))
        rng.shuffle(files)
        cut = int(len(files) * args.held_out)
        held[name] = files[:cut]
        folder = args.out / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in files[cut:]:
            link = folder / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
    side = args.blocks * 2 * 64
    scene = np.zeros((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    unused = {name: list(files) for name, files in held.items()}
    for by in range(args.blocks):
        for bx in range(args.blocks):
            name = rng.choice([c for c in classes if len(unused[c]) >= 4])
            for k in range(4):
                y, x = (by * 2 + k // 2) * 64, (bx * 2 + k % 2) * 64
                scene[y : y + 64, x : x + 64] = np.asarray(
                    Image.open(unused[name].pop()).convert("RGB").resize((64, 64))
                )
                mask[y : y + 64, x : x + 64] = classes.index(name)
    Image.fromarray(scene).save(args.out / "mosaic.png")
    Image.fromarray(mask, mode="L").save(args.out / "mosaic_mask.png")
    (args.out / "classes.json").write_text(json.dumps({"classes": classes}, indent=1))
    print(f"train: {sum(1 for _ in (args.out / 'train').rglob('*.jpg'))} tiles; mosaic {side}×{side} px")


if __name__ == "__main__":
    main()
