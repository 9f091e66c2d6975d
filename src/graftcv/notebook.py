"""Compact HTML summaries that Jupyter shows for a `Run`, a `Model` and a `Comparison` (their `_repr_html_`)."""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

STYLE = (
    "font-family:system-ui,sans-serif;font-size:13px;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;"
    "display:inline-block;max-width:100%"
)
CELL = "padding:2px 8px;text-align:left;border-bottom:1px solid #eee"
SHOWN = ("val_accuracy", "val_macro_f1", "val_map_macro", "val_mean_task_score", "test_accuracy", "test_macro_f1",
         "test_map_macro", "test_mean_task_score", "train_seconds")  # fmt: skip
MAX_MATRIX = 12  # classes shown in the confusion-matrix thumbnail


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(
        f"<tr><th style='{CELL}'>{html.escape(k)}</th><td style='{CELL}'>{html.escape(v)}</td></tr>" for k, v in pairs
    )


def _number(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def confusion_thumbnail(path: Path) -> str:
    """The confusion matrix CSV (true rows, predicted columns) as a small heat-map table, '' when absent."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError:
        return ""
    if len(rows) < 2:
        return ""
    names, body = rows[0][1:], [[float(x or 0) for x in row[1:]] for row in rows[1:]]
    if len(names) > MAX_MATRIX:
        return f"<p>confusion matrix: {len(names)} classes (see report.html)</p>"
    cells = []
    for name, row in zip(names, body, strict=False):
        total = sum(row) or 1.0
        shades = "".join(
            f"<td title='{html.escape(name)} → {html.escape(other)}: {int(n)}' style='width:14px;height:14px;"
            f"background:rgba(31,111,235,{n / total:.2f})'></td>"
            for other, n in zip(names, row, strict=False)
        )
        cells.append(f"<tr><th style='font-weight:normal;text-align:right;padding-right:4px'>{html.escape(name)}</th>"
                     f"{shades}</tr>")  # fmt: skip
    return "<p style='margin:6px 0 2px'>validation confusion (rows: true)</p><table>" + "".join(cells) + "</table>"


def run_html(summary: dict, out_dir: Path) -> str:
    """A finished run: its strategy and backbone, headline scores, time, and the validation confusion matrix."""
    title = f"graftcv run · {summary.get('strategy', '?')} · {summary.get('model', '')}"
    pairs = [(k.replace("_", " "), _number(summary[k])) for k in SHOWN if summary.get(k) is not None]
    counts = " / ".join(str(summary.get(k, "–")) for k in ("n_train", "n_val", "n_test"))
    pairs += [("images train / val / test", counts), ("run directory", str(out_dir))]
    matrix = confusion_thumbnail(Path(out_dir) / "val_confusion_matrix.csv")
    return f"<div style='{STYLE}'><b>{html.escape(title)}</b><table>{_rows(pairs)}</table>{matrix}</div>"


def model_html(meta: dict, runtime: str, tta: str) -> str:
    """A loaded model: backbone, kind, classes, input, validation metrics recorded in it."""
    classes = list(meta.get("classes", []))
    shown = ", ".join(classes[:12]) + (f" … ({len(classes)})" if len(classes) > 12 else "")
    side = (meta.get("data_config") or {}).get("input_size", [0, 0, 0])
    pairs = [("backbone", str(meta.get("backbone"))), ("kind", str(meta.get("kind"))), ("classes", shown),
             ("input", f"{side[-1]} px"), ("runtime / TTA", f"{runtime} / {tta}")]  # fmt: skip
    pairs += [(f"val {k.replace('_', ' ')}", _number(v)) for k, v in (meta.get("metrics") or {}).items()]
    return f"<div style='{STYLE}'><b>graftcv model</b><table>{_rows(pairs)}</table></div>"


def comparison_html(table: list[dict], scores: tuple[str, ...], out_dir: Path, headline: str) -> str:
    """A comparison: strategy × shots with the headline score's mean and 95% interval."""
    key = scores[0]
    head = f"<tr><th style='{CELL}'>strategy</th><th style='{CELL}'>shots</th><th style='{CELL}'>n</th>" \
           f"<th style='{CELL}'>{html.escape(key.removeprefix('test_'))} (95% CI)</th></tr>"  # fmt: skip
    body = ""
    for entry in table:
        low, high = entry.get(f"{key}_ci_low"), entry.get(f"{key}_ci_high")
        interval = "" if low is None or math.isnan(low) else f" [{low:.3f}, {high:.3f}]"
        body += (f"<tr><td style='{CELL}'>{html.escape(str(entry['strategy']))}</td><td style='{CELL}'>"
                 f"{entry['shots']}</td><td style='{CELL}'>{entry['n']}</td><td style='{CELL}'>"
                 f"{_number(entry.get(f'{key}_mean', math.nan))}{interval}</td></tr>")  # fmt: skip
    return (f"<div style='{STYLE}'><b>graftcv comparison</b> · {html.escape(str(out_dir))}<table>{head}{body}"
            f"</table><p>{html.escape(headline)}</p></div>")  # fmt: skip
