"""A table of `graftcv map` runs from their map.json files: pixel accuracy, mIoU, per-class IoU, tiles/s.

python bench/map_table.py bench/out/maps-*/map.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    rows = []
    for path in map(Path, sys.argv[1:]):
        summary = json.loads(path.read_text())
        scores = summary.get("scores")
        if scores is None:
            continue
        ious = " ".join(f"{c}={v:.3f}" if v is not None else f"{c}=—" for c, v in scores["iou"].items())
        rows.append((path.parent.name, scores["pixel_accuracy"], scores["miou"], summary["tiles"],
                     summary["seconds"], summary["tiles_per_second"], ious))  # fmt: skip
    print("| run | pixel acc | mIoU | tiles | s | tiles/s | IoU per class |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, acc, miou, tiles, seconds, rate, ious in rows:
        print(f"| {name} | {acc:.4f} | {miou:.4f} | {tiles:,} | {seconds:.1f} | {rate:.1f} | {ious} |")


if __name__ == "__main__":
    main()
