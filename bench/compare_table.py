"""Print `graftcv compare` output folders as the Markdown tables of bench/RESULTS.md (from compare.json)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from graftcv.compare import TABLE_METRICS, cell_text

COLUMNS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "train_seconds", "epochs_to_95")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="compare output folders")
    args = parser.parse_args()
    print("| strategy | shots | n | " + " | ".join(TABLE_METRICS[c] for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for folder in args.folders:
        for entry in json.loads((folder / "compare.json").read_text())["table"]:
            entry = {k: math.nan if v is None else v for k, v in entry.items()}  # JSON has null for NaN
            cells = " | ".join(cell_text(entry, c) for c in COLUMNS)
            print(f"| {entry['strategy']} | {entry['shots']} | {entry['n']} | {cells} |")


if __name__ == "__main__":
    main()
