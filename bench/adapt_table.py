"""Target accuracy per (target domain, method) over seeds from `graftcv adapt` runs: mean, 95% t-interval,
seconds per run, the domain shift after training, and negative transfer stated in words.

    python bench/adapt_table.py bench/out/adapt-*/adaptation.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats


def interval(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan")
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def main() -> None:
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in map(Path, sys.argv[1:]):
        found = json.loads(path.read_text())
        summary = json.loads((path.parent / "summary.json").read_text())
        target = Path(found["target"]).name
        cells[(target, found["method"])].append(found | {"seconds": summary.get("wall_seconds")})
    print("| target | method | seeds | target acc (95% CI) | macro-F1 | A-distance before → after | s/run |")
    print("|---|---|---:|---:|---:|---:|---:|")
    baselines = {}
    for (target, method), runs in sorted(cells.items()):
        mean, half = interval([r["target_accuracy"] for r in runs])
        f1 = np.mean([r["target_macro_f1"] for r in runs])
        before = np.mean([r["domain_shift"]["before"]["proxy_a_distance"] for r in runs])
        after = np.mean([r["domain_shift"]["after"]["proxy_a_distance"] for r in runs])
        seconds = np.mean([r["seconds"] or 0 for r in runs])
        print(
            f"| {target} | {method} | {len(runs)} | {mean:.4f} ± {half:.4f} | {f1:.4f} | {before:.2f} → {after:.2f} "
            f"| {seconds:.0f} |"
        )
        if method == "source-only":
            baselines[target] = (mean, half)
    for (target, method), runs in sorted(cells.items()):
        if method == "source-only" or target not in baselines:
            continue
        mean, half = interval([r["target_accuracy"] for r in runs])
        base, base_half = baselines[target]
        if mean + np.nan_to_num(half) < base - np.nan_to_num(base_half):
            print(
                f"- negative transfer: {method} on {target} is below source-only beyond both intervals "
                f"({mean:.4f} vs {base:.4f})."
            )


if __name__ == "__main__":
    main()
