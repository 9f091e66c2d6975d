"""Files of a comparison: compare.csv, runs.csv, compare.json, splits.json, PNG plots and compare.html."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from graftcv.atomic import write_bytes, write_csv, write_json
from graftcv.compare.protocol import SCRATCH, Split, level_words, splits_record
from graftcv.compare.stats import SINGLE_LABEL_SCORES, Comparison, headline, level_order, score_name
from graftcv.data import ImageSet
from graftcv.pages import figure_png, new_figure, png_uri, render_page

TIME_NAMES = {"train_seconds": "train seconds", "epochs_to_95": "epochs to 95%", "seconds_to_95": "seconds to 95%"}
TABLE_METRICS = {key: score_name(key) for key in SINGLE_LABEL_SCORES} | TIME_NAMES


def table_metrics(scores: tuple[str, ...] = SINGLE_LABEL_SCORES) -> dict[str, str]:
    """The table's columns, key → name: the comparison's scores, then its times."""
    return {key: score_name(key) for key in scores} | TIME_NAMES


def run_columns(scores: tuple[str, ...] = SINGLE_LABEL_SCORES) -> list[str]:
    """runs.csv's columns: the cell, its test scores, its validation headline, times and what tuning chose."""
    validation = ["val_accuracy"] if scores == SINGLE_LABEL_SCORES else ["val_score"]
    return ["strategy", "shots", "split", "images_per_class", *scores, *validation, "train_seconds", "epochs",
            "epochs_to_95", "seconds_to_95", "chosen", "tune_runs", "tune_seconds", "out_dir"]  # fmt: skip


RUN_COLUMNS = run_columns()
PLOT_DPI = 110


def cell_text(entry: dict, metric: str) -> str:
    """'0.912 ± 0.021 [0.886, 0.938]': mean ± std [95% CI]; std and CI left out where undefined (one run)."""
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if mean is None or math.isnan(mean):
        return "–"
    digits = 3 if metric.startswith("test_") else 1
    text = f"{mean:.{digits}f}"
    if not math.isnan(std):
        text += f" ± {std:.{digits}f} [{entry[f'{metric}_ci_low']:.{digits}f}, {entry[f'{metric}_ci_high']:.{digits}f}]"
    return text


def missing_text(missing: list[dict]) -> str:
    """One sentence naming the cells the budget left out ('' when none)."""
    if not missing:
        return ""
    cells = ", ".join(f"{m['strategy']}·{m['shots']}·split {m['split']}" for m in missing[:12])
    more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    return f"Budget spent: {len(missing)} run(s) not launched: {cells}{more}."


def _clean(value):
    """JSON without NaN (not valid JSON): undefined statistics become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_splits(path: Path, images: ImageSet, splits: list[Split]) -> Path:
    """splits.json: which images every split trains, chooses and is scored on (nothing reads it back)."""
    return write_json(path, splits_record(images, splits))


# --- plots -----------------------------------------------------------------------------------------


def _style(strategy: str) -> dict:
    return {"linestyle": "--", "color": "black"} if strategy == SCRATCH else {}


def plot_accuracy_vs_shots(table: list[dict], metric: str = "test_accuracy") -> Figure:
    """The headline test score against labelled images per class, one line per strategy, 95% CI error bars."""
    figure = new_figure(7, 4.5)
    ax = figure.add_subplot()
    for strategy in dict.fromkeys(entry["strategy"] for entry in table):
        entries = sorted((e for e in table if e["strategy"] == strategy), key=lambda e: e["images_per_class"])
        x = [e["images_per_class"] for e in entries]
        y = [e[f"{metric}_mean"] for e in entries]
        err = [
            0.0 if math.isnan(e[f"{metric}_ci_low"]) else y[i] - e[f"{metric}_ci_low"] for i, e in enumerate(entries)
        ]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=strategy, **_style(strategy))
    if len({e["images_per_class"] for e in table}) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel(f"held-out {score_name(metric)}")
    ax.set_title(f"{score_name(metric)} vs labelled images (error bars: 95% CI over splits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _mean_curve(histories: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch numbers, mean validation accuracy and mean seconds per epoch over the runs that reached it."""
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for history in histories:
        for row in history:
            if row.get("val_acc") is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append((float(row["val_acc"]), float(row["seconds"])))
    epochs = np.array(sorted(by_epoch))
    acc = np.array([np.mean([a for a, _ in by_epoch[e]]) for e in epochs])
    seconds = np.array([np.mean([s for _, s in by_epoch[e]]) for e in epochs])
    return epochs, acc, seconds


def plot_curves(rows: list[dict]) -> Figure:
    """Validation accuracy vs epoch and vs seconds at the largest shot level: transfer strategies vs scratch.
    Closed-form strategies have no epochs: a point at epoch 0 and at their fitting time."""
    level = max({row["shots"] for row in rows}, key=level_order)
    at_level = [row for row in rows if row["shots"] == level]
    figure = new_figure(11, 4.2)
    by_epoch, by_time = figure.subplots(1, 2)
    for strategy in dict.fromkeys(row["strategy"] for row in at_level):
        runs = [row for row in at_level if row["strategy"] == strategy]
        histories = [row["history"] for row in runs if row.get("history")]
        if histories:
            epochs, acc, seconds = _mean_curve(histories)
            by_epoch.plot(epochs, acc, marker=".", label=strategy, **_style(strategy))
            by_time.plot(seconds, acc, marker=".", label=strategy, **_style(strategy))
        elif all("val_accuracy" in row for row in runs):  # one label per image: the probe's validation accuracy
            acc = float(np.mean([row["val_accuracy"] for row in runs]))
            seconds = float(np.mean([row["train_seconds"] for row in runs]))
            by_epoch.plot([0], [acc], marker="*", markersize=12, linestyle="none", label=f"{strategy} (no epochs)")
            by_time.plot([seconds], [acc], marker="*", markersize=12, linestyle="none", label=f"{strategy}")
    shots = level_words(level)
    by_epoch.set(xlabel="epoch", ylabel="validation accuracy", title=f"Validation accuracy vs epoch ({shots})")
    by_time.set(xlabel="seconds of training", ylabel="validation accuracy", title="… vs training time")
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


# --- tables and pages ------------------------------------------------------------------------------


def write_csvs(comparison: Comparison) -> tuple[Path, Path]:
    """compare.csv (one row per strategy × shot level) and runs.csv (one row per run)."""
    out = comparison.out_dir
    columns = ["strategy", "shots", "images_per_class", "n"] + [
        f"{metric}_{stat}"
        for metric in table_metrics(comparison.scores)
        for stat in ("mean", "std", "ci_low", "ci_high")
    ]
    runs = [row | {"chosen": json.dumps(row.get("chosen") or {})} for row in comparison.rows]
    return (
        write_csv(out / "compare.csv", columns, comparison.table),
        write_csv(out / "runs.csv", run_columns(comparison.scores), runs),
    )


def write_html(comparison: Comparison, plots: dict[str, bytes], sentence: str) -> Path:
    """compare.html: self-contained (the plots are embedded), in the run report's style."""
    metrics = table_metrics(comparison.scores)
    rows = [entry | {"cells": [cell_text(entry, metric) for metric in metrics]} for entry in comparison.table]
    return render_page(
        "compare.html.j2",
        comparison.out_dir / "compare.html",
        data_name=Path(comparison.protocol["data"]).name,
        protocol=comparison.protocol,
        settings=comparison.settings,
        headline=sentence,
        negative=any(v["kind"] == "negative-transfer" for v in comparison.verdicts),
        verdicts=comparison.verdicts,
        missing=missing_text(comparison.missing),
        metrics=metrics,
        rows=rows,
        images=[(title, png_uri(png)) for title, png in plots.items()],
        out_dir=str(comparison.out_dir),
    )


def write_outputs(comparison: Comparison) -> dict[str, Path]:
    """Every file of a comparison's results; plots only when some run finished."""
    out = comparison.out_dir
    sentence = headline(comparison.verdicts)
    files: dict[str, Path] = {}
    files["table_csv"], files["runs_csv"] = write_csvs(comparison)
    plots: dict[str, bytes] = {}
    if comparison.rows:
        figures = {
            (
                "accuracy_vs_shots",
                f"{score_name(comparison.scores[0])} vs labelled images per class",
            ): plot_accuracy_vs_shots(comparison.table, comparison.scores[0]),
            ("curves", "Validation accuracy vs epoch and vs seconds"): plot_curves(comparison.rows),
        }
        for (name, title), figure in figures.items():
            plots[title] = figure_png(figure, dpi=PLOT_DPI)
            files[name] = write_bytes(out / f"{name}.png", plots[title])
    record = {
        "protocol": comparison.protocol,
        "settings": comparison.settings,
        "headline": sentence,
        "verdicts": comparison.verdicts,
        "missing": comparison.missing,
        "table": comparison.table,
        "runs": comparison.rows,
    }
    files["json"] = write_json(out / "compare.json", _clean(record))
    files["html"] = write_html(comparison, plots, sentence)
    return files
