"""Target accuracy per (target domain, method) over seeds from `bench/adapt.sh` runs, through the same table and
words as `graftcv adapt --methods` (mean, 95% t-interval, each method minus source-only, negative transfer), with
the whole process's wall seconds from each run's log.

    .venv/bin/python bench/adapt_table.py bench/out
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

from graftcv.compare.adaptation import markdown, run_row, tabulate

NAME = re.compile(r"adapt-(?P<target>.+)-(?P<method>source-only|dann|mmd|coral|self-training)-(?P<seed>\d+)$")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
    rows = defaultdict(list)
    for run_dir in sorted(root.glob("adapt-*")):
        found = NAME.match(run_dir.name)
        if not run_dir.is_dir() or found is None or not (run_dir / "adaptation.json").is_file():
            continue
        log = run_dir.with_name(run_dir.name + ".log")
        wall = re.findall(r"([\d.]+) s wall", log.read_text()) if log.is_file() else []
        seconds = float(wall[-1]) if wall else None
        rows[found["target"]].append(run_row(run_dir, int(found["seed"]), seconds))
    for target, found in rows.items():
        order = ["source-only", "dann", "mmd", "coral", "self-training"]
        found.sort(key=lambda r: (order.index(r["method"]), r["seed"]))
        print(f"### photo → {target}\n")
        print(markdown(tabulate(found)))


if __name__ == "__main__":
    main()
