"""Tables of bench/multilabel.sh's runs (issue 20): per-task test accuracy of the multi-task model against the
single-task ones, and mosaic test mAP / micro-F1 at the thresholds chosen on validation against 0.5 everywhere.

    .venv/bin/python bench/multilabel_table.py [bench/out]
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

from graftcv.data.tasks import Layout
from graftcv.evaluation.multilabel import multilabel_report


def _wall(run: Path) -> str:
    log = run.with_suffix(".log")
    found = re.search(r"([\d.]+) s wall, (\d+) KB peak", log.read_text()) if log.is_file() else None
    return f"{float(found[1]):.0f} s, {int(found[2]) / 1e6:.1f} GB" if found else "?"


def tasks(root: Path) -> None:
    multi = json.loads((root / "ml-tasks-multi" / "test_metrics.json").read_text())["tasks"]
    print("| task | multi-task model: test acc. / macro-F1 | single-task model: test acc. / macro-F1 |")
    print("|---|---:|---:|")
    for task in ("object", "domain"):
        single = json.loads((root / f"ml-tasks-{task}" / "test_metrics.json").read_text())
        print(f"| {task} | {multi[task]['accuracy']:.4f} / {multi[task]['macro_f1']:.4f} | "
              f"{single['accuracy']:.4f} / {single['macro_f1']:.4f} |")  # fmt: skip
    print("\nwall (whole process), peak RSS: " + ", ".join(
        f"{name} {_wall(root / f'ml-tasks-{name}')}" for name in ("multi", "object", "domain")))  # fmt: skip


def mosaics(root: Path) -> None:
    print("| strategy | thresholds | test mAP (macro) | mAP (micro) | micro-F1 | macro-F1 | subset acc. | wall, peak |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for strategy in ("linear-probe", "finetune"):
        run = root / f"ml-mosaic-{strategy}"
        rows = list(csv.DictReader((run / "test_predictions.csv").open()))
        layout = Layout.from_meta(json.loads((run / "model" / "graftcv.json").read_text())["tasks"])
        truth = layout.targets([r["labels"] for r in rows])
        probs = np.array([[float(r[o]) for o in layout.outputs] for r in rows])
        for name, cut in (("tuned on val", layout.thresholds()), ("0.5", None)):
            r = multilabel_report(truth, probs, layout.outputs, cut)
            print(f"| {strategy} | {name} | {r['map_macro']:.4f} | {r['map_micro']:.4f} | {r['f1_micro']:.4f} | "
                  f"{r['f1_macro']:.4f} | {r['subset_accuracy']:.4f} | {_wall(run)} |")  # fmt: skip


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
    tasks(root)
    print()
    mosaics(root)
