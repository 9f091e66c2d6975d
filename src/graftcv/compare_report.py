"""Files of a comparison: compare.json, compare.csv, runs.csv, PNG plots and a self-contained compare.html."""

from __future__ import annotations

import base64
import csv
import json
import math
from pathlib import Path

import numpy as np

from graftcv.compare import SCRATCH, Comparison, headline, level_order

RUN_COLUMNS = [
    "strategy",
    "shots",
    "split",
    "images_per_class",
    "test_accuracy",
    "test_balanced_accuracy",
    "test_macro_f1",
    "val_accuracy",
    "train_seconds",
    "epochs",
    "epochs_to_95",
    "seconds_to_95",
    "chosen",
    "tune_runs",
    "tune_seconds",
    "out_dir",
]
TABLE_METRICS = {
    "test_accuracy": "accuracy",
    "test_balanced_accuracy": "balanced accuracy",
    "test_macro_f1": "macro-F1",
    "train_seconds": "train seconds",
    "epochs_to_95": "epochs to 95%",
    "seconds_to_95": "seconds to 95%",
}


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


def _style(strategy: str) -> dict:
    return {"linestyle": "--", "color": "black"} if strategy == SCRATCH else {}


def plot_accuracy_vs_shots(table: list[dict], path: Path) -> Path:
    """Test accuracy against labelled images per class, one line per strategy, 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy in dict.fromkeys(entry["strategy"] for entry in table):
        entries = sorted((e for e in table if e["strategy"] == strategy), key=lambda e: e["images_per_class"])
        x = [e["images_per_class"] for e in entries]
        y = [e["test_accuracy_mean"] for e in entries]
        err = [
            0.0 if math.isnan(e["test_accuracy_ci_low"]) else y[i] - e["test_accuracy_ci_low"]
            for i, e in enumerate(entries)
        ]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=strategy, **_style(strategy))
    if len({e["images_per_class"] for e in table}) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Accuracy vs labelled images (error bars: 95% CI over splits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Validation accuracy vs epoch and vs seconds at the largest shot level: transfer strategies vs scratch.
    Probes have no epochs: a point at epoch 0 and at their fitting time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = max({row["shots"] for row in rows}, key=level_order)
    at_level = [row for row in rows if row["shots"] == level]
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy in dict.fromkeys(row["strategy"] for row in at_level):
        runs = [row for row in at_level if row["strategy"] == strategy]
        histories = [row["history"] for row in runs if row.get("history")]
        if histories:
            epochs, acc, seconds = _mean_curve(histories)
            by_epoch.plot(epochs, acc, marker=".", label=strategy, **_style(strategy))
            by_time.plot(seconds, acc, marker=".", label=strategy, **_style(strategy))
        else:
            acc = float(np.mean([row["val_accuracy"] for row in runs]))
            seconds = float(np.mean([row["train_seconds"] for row in runs]))
            by_epoch.plot([0], [acc], marker="*", markersize=12, linestyle="none", label=f"{strategy} (no epochs)")
            by_time.plot([seconds], [acc], marker="*", markersize=12, linestyle="none", label=f"{strategy}")
    shots = "all training images" if level == "all" else f"{level} images per class"
    by_epoch.set(xlabel="epoch", ylabel="validation accuracy", title=f"Validation accuracy vs epoch ({shots})")
    by_time.set(xlabel="seconds of training", ylabel="validation accuracy", title="… vs training time")
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_csvs(comparison: Comparison) -> tuple[Path, Path]:
    out = comparison.out_dir
    table_path, runs_path = out / "compare.csv", out / "runs.csv"
    columns = ["strategy", "shots", "images_per_class", "n"] + [
        f"{metric}_{stat}" for metric in TABLE_METRICS for stat in ("mean", "std", "ci_low", "ci_high")
    ]
    with table_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(comparison.table)
    with runs_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in comparison.rows:
            writer.writerow(row | {"chosen": json.dumps(row.get("chosen") or {})})
    return table_path, runs_path


HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graftcv compare · {{ data_name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline { font-size: 1.1em; font-weight: 600; } .negative { color: #a00; } .missing { color: #a60; }
img { max-width: 100%; } code { background: #f3f3f3; padding: 1px 4px; }
</style></head><body>
<h1>Strategies compared on {{ data_name }}</h1>
<p>{{ protocol.mode }}, {{ protocol.splits }} splits, seed {{ protocol.seed }}; {{ protocol.images }} images,
{{ protocol.class_counts | length }} classes; model <code>{{ settings.get("model", "default") }}</code>{% if
settings.get("size") %} at {{ settings.size }} px{% endif %}. Scores are on held-out images no run trained or chose
on; each cell is mean ± std [95% CI, t-distribution over splits].</p>
<p class="headline {{ 'negative' if negative else '' }}">{{ headline }}</p>
<ul>{% for v in verdicts %}<li class="{{ 'negative' if v.kind == 'negative-transfer' else '' }}">{{ v.sentence }}</li>
{% endfor %}</ul>
{% if missing %}<p class="missing">{{ missing }}</p>{% endif %}
<table><tr><th>strategy</th><th>shots</th><th>img/class</th><th>n</th>
{% for name in metrics.values() %}<th>{{ name }}</th>{% endfor %}</tr>
{% for row in rows %}<tr><td>{{ row.strategy }}</td><td>{{ row.shots }}</td>
<td class="num">{{ "%.1f" | format(row.images_per_class) }}</td><td class="num">{{ row.n }}</td>
{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% for title, image in images %}<h2>{{ title }}</h2><img alt="{{ title }}" src="data:image/png;base64,{{ image }}">
{% endfor %}
<p><small>Scratch recipe: {{ protocol.scratch_recipe }}. Tuned: {{ protocol.tune or "nothing" }}.</small></p>
</body></html>
"""


def write_html(comparison: Comparison, plots: dict[str, Path], headline: str) -> Path:
    from jinja2 import Template

    rows = [entry | {"cells": [cell_text(entry, metric) for metric in TABLE_METRICS]} for entry in comparison.table]
    images = [(title, base64.b64encode(path.read_bytes()).decode()) for title, path in plots.items()]
    html = Template(HTML, autoescape=True).render(
        data_name=Path(comparison.protocol["data"]).name,
        protocol=comparison.protocol,
        settings=comparison.settings,
        headline=headline,
        negative=any(v["kind"] == "negative-transfer" for v in comparison.verdicts),
        verdicts=comparison.verdicts,
        missing=missing_text(comparison.missing),
        metrics=TABLE_METRICS,
        rows=rows,
        images=images,
    )
    path = comparison.out_dir / "compare.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_outputs(comparison: Comparison) -> dict[str, Path]:
    """Every file of a comparison; plots only when some run finished."""
    out = comparison.out_dir
    sentence = headline(comparison.verdicts)
    files: dict[str, Path] = {}
    files["table_csv"], files["runs_csv"] = write_csvs(comparison)
    plots: dict[str, Path] = {}
    if comparison.rows:
        plots["Accuracy vs labelled images per class"] = plot_accuracy_vs_shots(
            comparison.table, out / "accuracy_vs_shots.png"
        )
        plots["Validation accuracy vs epoch and vs seconds"] = plot_curves(comparison.rows, out / "curves.png")
    files |= {path.stem: path for path in plots.values()}
    record = {
        "protocol": comparison.protocol,
        "settings": comparison.settings,
        "headline": sentence,
        "verdicts": comparison.verdicts,
        "missing": comparison.missing,
        "table": comparison.table,
        "runs": comparison.rows,
    }
    files["json"] = out / "compare.json"
    files["json"].write_text(json.dumps(_clean(record), indent=2, default=str))
    files["html"] = write_html(comparison, plots, sentence)
    return files
