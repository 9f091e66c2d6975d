"""`graftcv adapt --methods a,b,c --seeds 0,1,2`: adaptation methods on the same source, target and seeds, their
target accuracy with 95% intervals, and each method against source-only in words (negative transfer included)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from graftcv.adaptation import METHODS
from graftcv.atomic import write_csv, write_json, write_text
from graftcv.compare.protocol import parse_list
from graftcv.compare.stats import summarize
from graftcv.errors import GraftcvError
from graftcv.rundir import data_name, default_run_dir, read_json

log = logging.getLogger("graftcv")
BASELINE = "source-only"
METRICS = ("target_accuracy", "target_macro_f1", "a_distance_after", "seconds")
RUN_COLUMNS = ["method", "seed", "target_accuracy", "target_macro_f1", "a_distance_before", "a_distance_after",
               "val_accuracy", "seconds", "run_dir"]  # fmt: skip


@dataclass
class AdaptationComparison:
    """Per run (`rows`), per method over the seeds (`table`), each method minus source-only (`verdicts`)."""

    rows: list[dict]
    table: list[dict]
    verdicts: list[dict]
    out_dir: Path | None = None


def run_row(run_dir: Path, seed: int | None = None, seconds: float | None = None) -> dict:
    """One finished `adapt` run's figures, from its adaptation.json and summary.json."""
    found = read_json(run_dir / "adaptation.json")
    if not found or "target_accuracy" not in found:
        raise GraftcvError(f"{run_dir} holds no finished adapt run with target labels (adaptation.json).")
    summary = read_json(run_dir / "summary.json") or {}
    shift = found.get("domain_shift", {})
    if seed is None:
        seed = (read_json(run_dir / "config.json") or {}).get("seed")
    return {
        "method": found["method"],
        "seed": seed,
        "target_accuracy": found["target_accuracy"],
        "target_macro_f1": found["target_macro_f1"],
        "a_distance_before": shift.get("before", {}).get("proxy_a_distance"),
        "a_distance_after": shift.get("after", {}).get("proxy_a_distance"),
        "val_accuracy": summary.get("val_accuracy"),
        "seconds": seconds if seconds is not None else found.get("seconds", summary.get("wall_seconds")),
        "run_dir": str(run_dir),
    }


def _points(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def tabulate(rows: list[dict]) -> AdaptationComparison:
    """Mean and 95% t-interval per method over its seeds; each method's paired difference from source-only over
    the seeds both ran (same seed, same validation split), in words: better, within the noise, or negative
    transfer (worse beyond the interval of the difference)."""
    methods = list(dict.fromkeys(row["method"] for row in rows))
    table = []
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        entry: dict = {"method": method, "n": len(mine)}
        for metric in METRICS:
            entry |= {f"{metric}_{k}": v for k, v in summarize(row[metric] for row in mine).items() if k != "n"}
        table.append(entry)
    baseline = {row["seed"]: row["target_accuracy"] for row in rows if row["method"] == BASELINE}
    verdicts = []
    for method in methods:
        if method == BASELINE:
            continue
        mine = {row["seed"]: row["target_accuracy"] for row in rows if row["method"] == method}
        seeds = sorted(set(mine) & set(baseline))
        if not seeds:
            continue
        diff = summarize(mine[s] - baseline[s] for s in seeds)
        kind = ("undecided" if diff["n"] < 2 else "better" if diff["ci_low"] > 0
                else "negative-transfer" if diff["ci_high"] < 0 else "no-clear-difference")  # fmt: skip
        verdicts.append({"method": method, "n": diff["n"], "minus_source_only": diff["mean"],
                         "ci_low": diff["ci_low"], "ci_high": diff["ci_high"], "kind": kind,
                         "sentence": _sentence(method, kind, diff)})  # fmt: skip
    return AdaptationComparison(rows, table, verdicts)


def _sentence(method: str, kind: str, diff: dict) -> str:
    gap = f"{_points(diff['mean'])} points of target accuracy"
    ci = f"95% CI {_points(diff['ci_low'])} to {_points(diff['ci_high'])}" if diff["n"] > 1 else "one seed, no CI"
    if kind == "better":
        return f"{method} beats source-only by {gap[1:]} over {diff['n']} seeds ({ci})."
    if kind == "negative-transfer":
        return (f"Negative transfer: {method} is worse than source-only by {gap[1:]} over {diff['n']} seeds ({ci}, "
                "entirely below zero): adapting to this target hurt.")  # fmt: skip
    if kind == "no-clear-difference":
        return f"{method} and source-only differ by {gap}, within the noise ({ci} includes zero)."
    return f"{method} minus source-only: {gap} ({ci})."


def markdown(comparison: AdaptationComparison) -> str:
    lines = ["| method | seeds | target accuracy (95% CI) | target macro-F1 | A-distance after | s/run |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for entry in comparison.table:
        low, high = entry["target_accuracy_ci_low"], entry["target_accuracy_ci_high"]
        ci = f" ({low:.4f}–{high:.4f})" if entry["n"] > 1 else ""
        lines.append(
            f"| {entry['method']} | {entry['n']} | {entry['target_accuracy_mean']:.4f}{ci} | "
            f"{entry['target_macro_f1_mean']:.4f} | {entry['a_distance_after_mean']:.2f} | "
            f"{entry['seconds_mean']:.0f} |"
        )
    return "\n".join(lines + [""] + [f"- {v['sentence']}" for v in comparison.verdicts]) + "\n"


def compare_adaptation(
    source: str | Path,
    target: str | Path,
    target_labels: str | Path,
    methods: str | Iterable[str] = METHODS,
    seeds: str | Iterable[int] = (0, 1, 2),
    out: str | Path | None = None,
    adapt: Callable | None = None,
    **settings,
) -> AdaptationComparison:
    """Every method with every seed (source-only always among them: it is what the others are measured against),
    each run in OUT/runs/seed-S/METHOD; finished runs found there are reused, so a killed comparison continues.
    Writes OUT/adaptation-compare.{json,csv,md}. `adapt` is for tests: default `graftcv.adaptation.adapt`."""
    if adapt is None:
        from graftcv.adaptation import adapt
    names = parse_list(methods)
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise GraftcvError(f"--methods takes a comma-separated list of {', '.join(METHODS)}, not {unknown or names}.")
    names = list(dict.fromkeys([BASELINE, *names]))
    try:
        seed_list = [int(s) for s in parse_list(seeds if isinstance(seeds, str) else map(str, seeds))]
    except ValueError:
        raise GraftcvError(f"--seeds takes comma-separated whole numbers, not {seeds!r}.") from None
    if not seed_list:
        raise GraftcvError("--seeds needs at least one seed (three or more give confidence intervals).")
    if "seed" in settings:
        raise GraftcvError("Several methods are compared over --seeds: drop --seed.")
    out_dir = Path(out) if out is not None else default_run_dir("adapt", data_name(source), data_name(target))
    rows = []
    for seed in seed_list:
        for method in names:
            run_dir = out_dir / "runs" / f"seed-{seed}" / method
            if not (run_dir / "adaptation.json").is_file():
                log.info("adapt %s, seed %d → %s", method, seed, run_dir)
                adapt(source, target, out=run_dir, method=method, target_labels=target_labels, seed=seed,
                      overwrite=True, **settings)  # fmt: skip
            rows.append(run_row(run_dir, seed))
    comparison = tabulate(rows)
    comparison.out_dir = out_dir
    write_json(out_dir / "adaptation-compare.json", {"source": str(source), "target": str(target),
               "target_labels": str(target_labels), "methods": names, "seeds": seed_list, "settings": settings,
               "table": comparison.table, "verdicts": comparison.verdicts, "runs": rows})  # fmt: skip
    write_csv(out_dir / "adaptation-runs.csv", RUN_COLUMNS, rows)
    write_text(out_dir / "adaptation-compare.md", markdown(comparison))
    return comparison
