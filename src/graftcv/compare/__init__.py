"""Compare strategies under one protocol (k-fold CV or repeated splits, shot subsets, nested tuning) via `fit`."""

from graftcv.compare.cells import reach_point
from graftcv.compare.outputs import TABLE_METRICS, cell_text, missing_text, table_metrics
from graftcv.compare.protocol import ALL, SCRATCH, build_splits, parse_list, parse_shots, tuning_grid
from graftcv.compare.run import compare
from graftcv.compare.stats import Comparison, aggregate, headline, summarize, transfer_verdicts

__all__ = [
    "ALL",
    "SCRATCH",
    "TABLE_METRICS",
    "Comparison",
    "aggregate",
    "build_splits",
    "cell_text",
    "compare",
    "headline",
    "missing_text",
    "parse_list",
    "parse_shots",
    "reach_point",
    "summarize",
    "table_metrics",
    "transfer_verdicts",
    "tuning_grid",
]
