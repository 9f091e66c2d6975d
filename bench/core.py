"""Issue-2 figures: wall time, accuracy, macro-F1 and peak memory of `graftcv train` on the shared sets.

Each run is a fresh `graftcv train` process (process start included) with its own feature cache, so
every linear-probe figure is a cold-cache one. Run by hand, one at a time on a quiet machine:

    .venv/bin/python bench/core.py --datasets ants_bees flowers5 sign_digits --strategies linear-probe finetune
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
GRAFTCV = Path(sys.executable).with_name("graftcv")


def run_one(dataset: str, strategy: str, extra: list[str], out_root: Path) -> dict:
    out = out_root / f"{dataset}-{strategy}"
    with tempfile.TemporaryDirectory() as cache:
        command = [
            str(GRAFTCV),
            "train",
            str(SHARED / dataset),
            "--strategy",
            strategy,
            "--out",
            str(out),
            "--overwrite",
            *extra,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, env={**os.environ, "GRAFTCV_CACHE": cache}, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"dataset": dataset, "strategy": strategy, "error": done.stderr.strip().splitlines()[-1:]}
    summary = json.loads((out / "summary.json").read_text())
    return {
        "dataset": dataset,
        "strategy": strategy,
        "val_accuracy": round(summary["val_accuracy"], 4),
        "val_macro_f1": round(summary["val_macro_f1"], 4),
        "epochs": summary["epochs"],
        "wall_s": round(wall, 1),
        "train_s": summary["train_seconds"],
        "peak_rss_mb": summary["peak_rss_mb"],  # the training process itself, loader workers not included
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "command": " ".join(["graftcv", *command[1:]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ants_bees"])
    parser.add_argument("--strategies", nargs="+", default=["linear-probe", "finetune"])
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then options passed to graftcv train")
    args = parser.parse_args()
    extra = [a for a in args.extra if a != "--"]
    rows = [run_one(d, s, extra, args.out) for d in args.datasets for s in args.strategies]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core.json").write_text(json.dumps(rows, indent=2))
    columns = ["dataset", "strategy", "val_accuracy", "val_macro_f1", "epochs", "wall_s", "train_s", "peak_rss_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [str(row.get(c, "")) for c in columns]
        if "error" in row:
            cells[2] = f"failed: {row['error']}"
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
