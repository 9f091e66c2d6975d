"""The report of a multi-label or multi-task run: per-label tables, label co-occurrence, F1 against the threshold."""

from __future__ import annotations

import numpy as np

from graftcv.data.tasks import Layout, split_labels
from graftcv.evaluation.multilabel import THRESHOLD_GRID, f1_by_threshold
from graftcv.pages import figure_label, figure_uri, new_figure
from graftcv.rundir import RunDir


def _rows(metrics: dict | None) -> list[dict]:
    if not metrics:
        return []
    tasks = metrics.get("tasks", {"labels": metrics})
    rows = []
    for task, found in tasks.items():
        for row in found.get("per_label") or found.get("per_class") or []:
            rows.append({"task": task, "label": row.get("label", row.get("class"))} | row)
    return rows


def _cooccurrence(truth: np.ndarray, names: list[str]) -> str:
    """Images per pair of labels (the diagonal: per label), coloured by the share of the row label's images."""
    counts = truth.T @ truth
    share = counts / np.maximum(np.diag(counts)[:, None], 1)
    figure = new_figure(1.2 + 0.45 * len(names), 1.0 + 0.4 * len(names))
    axis = figure.subplots()
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [figure_label(n) for n in names]
    axis.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(names)), labels, fontsize=8)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                colour = "white" if share[i, j] > 0.6 else "black"
                axis.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7, color=colour)
    axis.set_title("validation images with both labels", fontsize=10)
    figure.tight_layout()
    return figure_uri(figure)


def _threshold_curves(truth: np.ndarray, probs: np.ndarray, names: list[str], chosen: np.ndarray) -> str:
    """Each multi-label label's validation F1 at every threshold, its chosen threshold marked."""
    figure = new_figure(7, 3.6)
    axis = figure.subplots()
    for column, name in enumerate(names):
        if not (truth[:, column] > 0).any():
            continue
        scores = f1_by_threshold(truth[:, column] > 0, probs[:, column])
        (line,) = axis.plot(THRESHOLD_GRID, scores, "-", label=figure_label(name), alpha=0.85)
        at = int(np.argmin(np.abs(THRESHOLD_GRID - chosen[column])))
        axis.plot([chosen[column]], [scores[at]], "o", color=line.get_color())
    axis.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("threshold")
    axis.set_ylabel("validation F1")
    axis.grid(alpha=0.3)
    if len(names) <= 12:
        axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    return figure_uri(figure)


def multi_section(run_dir: RunDir, summary: dict) -> dict | None:
    """What the page shows of a run with several labels per image (None for one label per image)."""
    layout = Layout.from_meta(summary.get("tasks"))
    if layout is None:
        return None
    section = {"kind": layout.kind, "val": _rows(run_dir.metrics("val")), "test": _rows(run_dir.metrics("test"))}
    predictions = run_dir.predictions("val")
    if not predictions:
        return section
    outputs = layout.outputs
    truth = layout.targets([row["labels"] for row in predictions])
    probs = np.array([[float(row[o]) for o in outputs] for row in predictions])
    cut = layout.thresholds()
    pairs = zip(layout.tasks, layout.slices, strict=True)
    multi = [i for task, part in pairs if task.kind == "multi" for i in range(part.start, part.stop)]
    if multi:
        names = [outputs[i] for i in multi]
        section["cooccurrence"] = _cooccurrence(truth[:, multi], names)
        section["thresholds"] = _threshold_curves(truth[:, multi], probs[:, multi], names, cut[multi])
    section["label_sets"] = len({row["labels"] for row in predictions})
    section["mean_labels"] = float(np.mean([len(split_labels(row["labels"])) for row in predictions]))
    return section
