"""The issue-21 table of one set: test accuracy, macro-F1, seconds and the change against the default train.

The last column compares with the mean of the default's seeds (0, 1, 2: rows default, default-seed1, default-seed2).

.venv/bin/python bench/tune_table.py bench/out/issue21/flowers5
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [  # (label, directory, kind): kind "run" reads summary.json, "eval" an evaluate --out metrics.json
    ("default train (Lite0, finetune)", "default", "run"),
    ("default train, --seed 1", "default-seed1", "run"),
    ("default train, --seed 2", "default-seed2", "run"),
    ("default, re-evaluated (no TTA)", "eval-plain", "eval"),
    ("default + TTA flip", "eval-flip", "eval"),
    ("default + TTA flip-crops", "eval-flipcrops", "eval"),
    ("Lite1 default", "lite1", "run"),
    ("Lite2 default", "lite2", "run"),
    ("ensemble Lite0/1/2, learned weights", "ens-learned", "run"),
    ("ensemble Lite0/1/2, equal weights", "ens-equal", "run"),
    ("ensemble learned + TTA flip", "eval-ens-flip", "eval"),
    ("--snapshots 3: best single epoch (the run's model)", "snapshots", "snap:best_epoch"),
    ("--snapshots 3: snapshot ensemble of the 3 cycle ends", "snapshots", "snap:ensemble"),
    ("--snapshots 3: greedy soup of the best epochs", "snapshots", "snap:soup"),
    ("--bagging 3 (bootstrap members, equal weights)", "bagging", "run"),
    ("greedy soup of tune's fine-tuned trials", "tune-soup", "run"),
    ("tune --budget 20m", "tune", "run"),
    ("ensemble of tune's top 3 trials", "tune-top3", "run"),
    ("train --preset best --budget 20m", "preset-best", "run"),
    ("former preset best: tune 3/4 of 20m, top-3 ensemble (learned), TTA", "preset-best-tune", "run"),
    ("train --preset fast (1/3 of train, cold cache)", "preset-fast", "run"),
]
STEPS = {"eval-flip": "eval-flip", "eval-flipcrops": "eval-flipcrops", "eval-ens-flip": "ens-learned-flip"}


def main() -> None:
    root = Path(sys.argv[1])
    seconds = {}
    if (root / "seconds.txt").is_file():
        for line in (root / "seconds.txt").read_text().splitlines():
            name, value = line.split()
            seconds[name] = float(value)
    base = None
    defaults = [root / name / "summary.json" for name in ("default", "default-seed1", "default-seed2")]
    scores = [json.loads(path.read_text())["test_accuracy"] for path in defaults if path.is_file()]
    mean = sum(scores) / len(scores) if scores else float("nan")
    print(f"| row | test acc | test macro-F1 | seconds | Δ vs default (points) | Δ vs {len(scores)}-seed mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, name, kind in ROWS:
        path = root / name / ("metrics.json" if kind == "eval" else "summary.json")
        if not path.is_file():
            continue
        found = json.loads(path.read_text())
        if kind.startswith("snap:"):
            found = found.get("snapshots", {}).get(kind[5:], {}) | {"wall_seconds": found.get("wall_seconds")}
            if "test_accuracy" not in found:
                continue
        if kind != "eval" and "test_accuracy" not in found:  # an ensemble of tune's trials, which saw no test split
            print(f"| {label} | – (val {found.get('val_accuracy', float('nan')):.4f}) | – | – | – | – |")
            continue
        acc = found["accuracy"] if kind == "eval" else found["test_accuracy"]
        f1 = found["macro_f1"] if kind == "eval" else found["test_macro_f1"]
        base = acc if base is None else base
        spent = seconds.get(STEPS.get(name, name)) or found.get("preset_seconds") or found.get("wall_seconds")
        shown = f"{spent:.0f}" if spent else "–"
        print(f"| {label} | {acc:.4f} | {f1:.4f} | {shown} | {100 * (acc - base):+.2f} | {100 * (acc - mean):+.2f} |")


if __name__ == "__main__":
    main()
