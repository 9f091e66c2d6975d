"""Stratified train/val/test CSVs (80/10/10 by default) of a class-folder image set, for timing whole runs.

.venv/bin/python bench/splits.py ../shared/datasets/flowers5 --out bench/out/splits/flowers5
then: graftcv train OUT/train.csv --val OUT/val.csv --test OUT/test.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--val", type=float, default=0.1)
    parser.add_argument("--test", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        rng.shuffle(files)
        n_test, n_val = round(len(files) * args.test), round(len(files) * args.val)
        parts = {"test": files[:n_test], "val": files[n_test : n_test + n_val], "train": files[n_test + n_val :]}
        for split, chosen in parts.items():
            rows[split] += [(str(path.resolve()), folder.name) for path in chosen]
    args.out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        with (args.out / f"{split}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(split_rows)
        print(f"{split}: {len(split_rows)} images → {args.out / f'{split}.csv'}")


if __name__ == "__main__":
    main()
