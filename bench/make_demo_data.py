"""Build the small demo image set shipped inside the package.

Takes a deterministic subset of the hymenoptera_data set (ants vs bees, from the
PyTorch transfer-learning tutorial) in ImageFolder layout ``SRC/{train,val}/{ants,bees}/``:
the first N images per class of each split, sorted by file name, skipping files
PIL cannot decode. Each image is converted to RGB, resized so that its shorter
side is ``--short-side`` pixels (LANCZOS) and re-encoded as JPEG quality 85.

    python bench/make_demo_data.py --src ../shared/datasets/ants_bees \
        --dst src/graftcv/demo_data/ants_bees
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
JPEG_QUALITY = 85


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    repo = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=repo.parent / "shared" / "datasets" / "ants_bees")
    p.add_argument("--dst", type=Path, default=repo / "src" / "graftcv" / "demo_data" / "ants_bees")
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--val-per-class", type=int, default=20)
    p.add_argument("--short-side", type=int, default=160)
    return p.parse_args(argv)


def resize_short_side(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    scale = short / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def convert(src: Path, dst: Path, short: int) -> bool:
    try:
        with Image.open(src) as im:
            if im.format not in {"JPEG", "PNG", "BMP", "WEBP", "TIFF"}:
                return False
            img = im.convert("RGB")
    except (UnidentifiedImageError, OSError):
        return False
    resize_short_side(img, short).save(dst, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    src: Path = args.src
    dst: Path = args.dst
    if not (src / "train").is_dir():
        print(f"error: {src} has no train/ folder", file=sys.stderr)
        return 1
    if dst.exists():
        shutil.rmtree(dst)
    total = 0
    for split, n in (("train", args.train_per_class), ("val", args.val_per_class)):
        for class_dir in sorted(d for d in (src / split).iterdir() if d.is_dir()):
            out_dir = dst / split / class_dir.name
            out_dir.mkdir(parents=True, exist_ok=True)
            files = sorted(f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            kept = 0
            for f in files:
                if kept >= n:
                    break
                if convert(f, out_dir / (f.stem + ".jpg"), args.short_side):
                    kept += 1
                else:
                    print(f"skipped undecodable {f}", file=sys.stderr)
            if kept < n:
                print(f"warning: only {kept} images in {class_dir}", file=sys.stderr)
            print(f"{split}/{class_dir.name}: {kept} images")
            total += kept
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {total} images, {size / 1e6:.2f} MB to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
