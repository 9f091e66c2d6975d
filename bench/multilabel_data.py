"""Honest multi-output data from real images (issue 20), written as CSVs beside the images they name:

    .venv/bin/python bench/multilabel_data.py tasks   [--per-domain 600] [--out bench/out/pacs-tasks]
    .venv/bin/python bench/multilabel_data.py mosaics [--train 800] [--test 200] [--out bench/out/pacs-mosaics]

tasks: pacs pooled over its three domains (photo, art_painting, cartoon), each image labelled with its object class
and its domain: train/val/test.csv (path,object,domain), stratified 70/15/15 on the pair, and the same splits as
single-task files (object_*.csv, domain_*.csv: path,label) for the baselines.

mosaics: 2x2 mosaics of pacs photos (labels: the set of classes present; 1 to 4 of 7), fixed seed. The photos are
split 70/30 first (stratified): training mosaics are drawn from the 70%, held-out mosaics only from the 30%, so no
photo of a held-out mosaic was ever seen in training. train.csv and test.csv are path,labels."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

PACS = Path("../shared/datasets/pacs")
DOMAINS = ("photo", "art_painting", "cartoon")


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _images(domain: str) -> list[tuple[Path, str]]:
    return sorted((p.resolve(), p.parent.name) for p in (PACS / domain).glob("*/*") if p.is_file())


def tasks(out: Path, per_domain: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for domain in DOMAINS:
        found = _images(domain)
        chosen = rng.permutation(len(found))[:per_domain] if per_domain else range(len(found))
        rows += [(found[i][0], found[i][1], domain) for i in sorted(chosen)]
    pairs = [f"{obj}/{dom}" for _, obj, dom in rows]
    index = np.arange(len(rows))
    train, rest = train_test_split(index, test_size=0.3, stratify=pairs, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=[pairs[i] for i in rest], random_state=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val), ("test", test)):
        chosen = [rows[i] for i in sorted(part)]
        _write(out / f"{name}.csv", ["path", "object", "domain"], [[str(p), o, d] for p, o, d in chosen])
        _write(out / f"object_{name}.csv", ["path", "label"], [[str(p), o] for p, o, _ in chosen])
        _write(out / f"domain_{name}.csv", ["path", "label"], [[str(p), d] for p, _, d in chosen])
        print(f"{name}: {len(chosen)} images")


def _mosaic(paths: list[Path], tile: int) -> Image.Image:
    canvas = Image.new("RGB", (2 * tile, 2 * tile))
    for k, path in enumerate(paths):
        image = Image.open(path).convert("RGB").resize((tile, tile), Image.Resampling.BICUBIC)
        canvas.paste(image, ((k % 2) * tile, (k // 2) * tile))
    return canvas


def mosaics(out: Path, n_train: int, n_test: int, tile: int, seed: int) -> None:
    found = _images("photo")
    labels = [label for _, label in found]
    pool_train, pool_test = train_test_split(np.arange(len(found)), test_size=0.3, stratify=labels, random_state=seed)
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, pool, count in (("train", pool_train, n_train), ("test", pool_test, n_test)):
        rows = []
        for i in range(count):
            picked = [found[j] for j in rng.choice(pool, 4, replace=False)]
            path = out / "images" / f"{name}_{i:04d}.jpg"
            _mosaic([p for p, _ in picked], tile).save(path, quality=92)
            rows.append([str(path.resolve()), ";".join(sorted({label for _, label in picked}))])
        _write(out / f"{name}.csv", ["path", "labels"], rows)
        sizes = np.bincount([len(r[1].split(";")) for r in rows], minlength=5)[1:]
        print(f"{name}: {count} mosaics from {len(pool)} photos; classes per mosaic 1-4: {sizes.tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("tasks", "mosaics"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--per-domain", type=int, default=600, help="tasks: images per domain (0: all)")
    parser.add_argument("--train", type=int, default=800, help="mosaics: training mosaics")
    parser.add_argument("--test", type=int, default=200, help="mosaics: held-out mosaics")
    parser.add_argument("--tile", type=int, default=112, help="mosaics: pixels per side of each photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "tasks":
        tasks(args.out or Path("bench/out/pacs-tasks"), args.per_domain, args.seed)
    else:
        mosaics(args.out or Path("bench/out/pacs-mosaics"), args.train, args.test, args.tile, args.seed)


if __name__ == "__main__":
    main()
