"""Statistics over the runs: means and t-intervals per cell, transfer-vs-scratch verdicts in words, the result."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from graftcv.compare.protocol import ALL, SCRATCH, level_words
from graftcv.data.tasks import MULTI, Layout
from graftcv.evaluation.outputs import MULTILABEL_HEADLINE

SINGLE_LABEL_SCORES = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1")
TIMES = ("train_seconds", "epochs_to_95", "seconds_to_95")
METRICS = SINGLE_LABEL_SCORES + TIMES


SCORE_NAMES = {
    "test_accuracy": "accuracy",
    "test_balanced_accuracy": "balanced accuracy",
    "test_macro_f1": "macro-F1",
    "test_map_macro": "mAP (macro)",
    "test_map_micro": "mAP (micro)",
    "test_f1_micro": "micro-F1",
    "test_f1_macro": "macro-F1",
    "test_subset_accuracy": "subset accuracy",
    "test_mean_task_score": "mean task score",
}


def score_name(key: str) -> str:
    """A score's name for people: 'mAP (macro)', or for a task's own score 'species accuracy'."""
    if key in SCORE_NAMES:
        return SCORE_NAMES[key]
    for suffix, name in (("_map_macro", "mAP"), ("_f1_micro", "micro-F1"), ("_accuracy", "accuracy"),
                         ("_macro_f1", "macro-F1")):  # fmt: skip
        if key.endswith(suffix):
            return f"{key.removeprefix('test_').removesuffix(suffix)} {name}"
    return key.removeprefix("test_").replace("_", " ")


def score_keys(layout: Layout | None) -> tuple[str, ...]:
    """The test scores a comparison aggregates, the headline (`headline_metric`, which verdicts use) first:
    accuracy; macro and micro mAP, micro- and macro-F1 and subset accuracy for one multi-label task; for several
    tasks their mean score, then each task's own (mAP and micro-F1, or accuracy and macro-F1)."""
    if layout is None:
        return SINGLE_LABEL_SCORES
    if len(layout.tasks) == 1:
        return tuple(f"test_{k}" for k in MULTILABEL_HEADLINE[:5])
    keys = ["test_mean_task_score"]
    for task in layout.tasks:
        own = ("map_macro", "f1_micro") if task.kind == MULTI else ("accuracy", "macro_f1")
        keys += [f"test_{task.name}_{k}" for k in own]
    return tuple(keys)


@dataclass
class Comparison:
    """What `compare` measured: one row per run, the aggregated table, the verdicts and what is missing."""

    out_dir: Path
    rows: list[dict]
    table: list[dict]
    verdicts: list[dict]
    missing: list[dict]
    protocol: dict
    settings: dict
    files: dict[str, Path] = field(default_factory=dict)
    scores: tuple[str, ...] = SINGLE_LABEL_SCORES  # the test scores aggregated, the headline first

    def _repr_html_(self) -> str:
        from graftcv.notebook import comparison_html

        return comparison_html(self.table, self.scores, self.out_dir, headline(self.verdicts))


def summarize(values: Iterable[float], confidence: float = 0.95) -> dict:
    """n, mean, sample std and the t-distribution confidence interval of the mean (NaN where undefined)."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(data.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std, sem = float(data.std(ddof=1)), float(stats.sem(data))
    low, high = (mean, mean) if sem == 0 else stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return {"n": n, "mean": mean, "std": std, "ci_low": float(low), "ci_high": float(high)}


def level_order(level: str) -> float:
    return math.inf if level == ALL else float(level)


def aggregate(rows: list[dict], scores: tuple[str, ...] = SINGLE_LABEL_SCORES) -> list[dict]:
    """One row per strategy × shot level: mean, std and 95% CI of every score and time over the splits."""
    table = []
    strategies = list(dict.fromkeys(row["strategy"] for row in rows))
    levels = sorted({row["shots"] for row in rows}, key=level_order)
    for level in levels:
        for strategy in strategies:
            cell = [row for row in rows if row["strategy"] == strategy and row["shots"] == level]
            if not cell:
                continue
            entry = {
                "strategy": strategy,
                "shots": level,
                "images_per_class": float(np.mean([row["images_per_class"] for row in cell])),
                "n": len(cell),
            }
            for metric in scores + TIMES:
                stat = summarize(row.get(metric) for row in cell)
                entry |= {f"{metric}_{k}": v for k, v in stat.items() if k != "n"}
            table.append(entry)
    return table


def _points(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"  # + 0.0 turns -0.0 into 0.0


def _kind(diff: dict) -> str:
    if diff["n"] < 2:
        return "undecided"
    if diff["ci_low"] > 0:
        return "negative-transfer"
    if diff["ci_high"] < 0:
        return "transfer-helps"
    return "no-clear-difference"


def transfer_verdicts(rows: list[dict], metric: str = "test_accuracy") -> list[dict]:
    """Transfer vs scratch at every shot level, in numbers and words, from paired differences over the splits
    both ran on: negative transfer is declared only when scratch wins beyond the 95% CI of the difference."""
    verdicts = []
    for level in sorted({row["shots"] for row in rows}, key=level_order):
        at_level = [row for row in rows if row["shots"] == level]
        scratch = {row["split"]: row[metric] for row in at_level if row["strategy"] == SCRATCH}
        transfer = [s for s in dict.fromkeys(row["strategy"] for row in at_level) if s != SCRATCH]
        if not scratch or not transfer:
            continue
        for strategy in transfer:
            mine = {row["split"]: row[metric] for row in at_level if row["strategy"] == strategy}
            paired = sorted(set(mine) & set(scratch))
            if not paired:
                continue
            diff = summarize(scratch[s] - mine[s] for s in paired)  # > 0: scratch better
            kind = _kind(diff)
            verdicts.append(
                {
                    "shots": level,
                    "strategy": strategy,
                    "metric": metric,
                    "n": diff["n"],
                    "scratch_minus_transfer": diff["mean"],
                    "ci_low": diff["ci_low"],
                    "ci_high": diff["ci_high"],
                    "transfer_mean": float(np.mean([mine[s] for s in paired])),
                    "scratch_mean": float(np.mean([scratch[s] for s in paired])),
                    "kind": kind,
                    "sentence": sentence(kind, strategy, level, diff, metric),
                }
            )
    return verdicts


def sentence(kind: str, strategy: str, level: str, diff: dict, metric: str) -> str:
    """One verdict in words, with the 95% CI of transfer minus scratch in points."""
    what = score_name(metric)
    gap = -diff["mean"]  # transfer minus scratch, in points below
    where = f"With {level_words(level)}"
    ci = f"95% CI of {strategy} minus scratch: {_points(-diff['ci_high'])} to {_points(-diff['ci_low'])} points"
    if kind == "negative-transfer":
        return (
            f"{where}, negative transfer: training from scratch beats {strategy} by {100 * diff['mean']:.1f} points "
            f"of {what} over {diff['n']} splits ({ci}, entirely below zero)."
        )
    if kind == "transfer-helps":
        return f"{where}, {strategy} beats training from scratch by {100 * gap:.1f} points of {what} ({ci})."
    if kind == "no-clear-difference":
        return (
            f"{where}, {strategy} and training from scratch differ by {_points(gap)} points of {what}, "
            f"within the noise ({ci} includes zero)."
        )
    return f"{where}, {strategy} minus scratch is {_points(gap)} points of {what} on a single split (no CI)."


def headline(verdicts: list[dict]) -> str:
    """One sentence on negative transfer over the whole comparison."""
    if not verdicts:
        return "Add scratch to the strategies to measure what transfer gains over training from scratch."
    negative = [v for v in verdicts if v["kind"] == "negative-transfer"]
    if negative:
        cells = "; ".join(f"{v['strategy']} with {level_words(v['shots'])}" for v in negative)
        return f"Negative transfer: training from scratch beats {cells}, beyond the 95% confidence interval."
    helped = [v for v in verdicts if v["kind"] == "transfer-helps"]
    return (
        f"No negative transfer: scratch never beats a transfer strategy beyond the 95% confidence interval; "
        f"transfer wins clearly in {len(helped)} of {len(verdicts)} comparisons."
    )
