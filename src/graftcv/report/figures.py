"""The report's pictures as inline data URIs: learning curves and confusion matrix (matplotlib), thumbnails."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from graftcv.pages import figure_label, figure_uri, new_figure

PHASE_COLOURS = ["#e8f0fb", "#fdf1e3", "#eaf6ec", "#f5e9f7", "#fbf7dd"]


def _number(value: str | float | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def learning_curves(rows: list[dict]) -> str:
    """Loss (train and validation), validation accuracy and learning rate per epoch, phases shaded."""
    epochs = [_number(r.get("epoch")) for r in rows]
    figure = new_figure(12, 3.4)
    loss_axis, accuracy_axis, lr_axis = figure.subplots(1, 3)
    loss_axis.plot(epochs, [_number(r.get("train_loss")) for r in rows], "o-", label="train")
    loss_axis.plot(epochs, [_number(r.get("val_loss")) for r in rows], "s-", label="validation")
    accuracy_axis.plot(epochs, [_number(r.get("val_acc")) for r in rows], "o-", color="tab:green")
    lr_values = [_number(r.get("lr")) for r in rows]
    lr_axis.plot(epochs, lr_values, "o-", color="tab:purple")
    if all(v > 0 for v in lr_values if not math.isnan(v)) and any(not math.isnan(v) for v in lr_values):
        lr_axis.set_yscale("log")
    phases: list[tuple[str, float, float]] = []
    for row, epoch in zip(rows, epochs, strict=True):
        if phases and phases[-1][0] == row.get("phase"):
            phases[-1] = (phases[-1][0], phases[-1][1], epoch)
        else:
            phases.append((str(row.get("phase")), epoch, epoch))
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "validation accuracy"), (lr_axis, "learning rate")):
        for i, (name, first, last) in enumerate(phases):
            label = figure_label(name) if axis is accuracy_axis else None
            axis.axvspan(first - 0.5, last + 0.5, color=PHASE_COLOURS[i % len(PHASE_COLOURS)], zorder=0, label=label)
        axis.set_title(title, fontsize=11)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    loss_axis.legend(fontsize=9)
    accuracy_axis.legend(fontsize=9, title="phase", title_fontsize=9)
    figure.tight_layout()
    return figure_uri(figure)


def confusion_heatmap(matrix: list[list[int]], classes: list[str]) -> str:
    """Counts coloured by the share of each true class (rows), so rare classes stay readable."""
    return figure_uri(confusion_figure(matrix, classes))


def confusion_figure(matrix: list[list[int]], classes: list[str]) -> Figure:
    """The confusion matrix heat map, its axes labelled with the class names (or their escapes, `figure_label`)."""
    labels = [figure_label(name) for name in classes]
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    side = min(14.0, 2.2 + 0.55 * n)
    figure = new_figure(side + 1.2, side)
    axis = figure.subplots()
    shown = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03, label="share of the true class")
    axis.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    axis.set_yticks(range(n), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if n <= 25:
        for (i, j), value in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.6 else "black"
            axis.text(j, i, f"{int(value)}", ha="center", va="center", color=colour, fontsize=9)
    figure.tight_layout()
    return figure
