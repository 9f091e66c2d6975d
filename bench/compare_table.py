"""Print a `graftcv compare` output folder's compare.csv as a Markdown table (for bench/RESULTS.md)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def cell(row: dict, metric: str, digits: int = 3) -> str:
    mean, std, low, high = (row.get(f"{metric}_{k}") for k in ("mean", "std", "ci_low", "ci_high"))
    if mean in (None, ""):
        return "—"
    text = f"{float(mean):.{digits}f}"
    if low not in (None, "") and int(row["n"]) > 1:
        text += f" ± {float(std):.{digits}f} [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="compare output folders")
    args = parser.parse_args()
    print("| strategy | shots | n | accuracy ± std [95% CI] | balanced acc | macro-F1 | train s | epochs to 95% |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        for row in csv.DictReader((folder / "compare.csv").open()):
            print(
                f"| {row['strategy']} | {row['shots']} | {row['n']} | {cell(row, 'test_accuracy')} "
                f"| {cell(row, 'test_balanced_accuracy')} | {cell(row, 'test_macro_f1')} "
                f"| {cell(row, 'train_seconds', 1)} | {cell(row, 'epochs_to_95', 1)} |"
            )


if __name__ == "__main__":
    main()
