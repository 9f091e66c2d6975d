"""Reports of models with several labels per image: one multi-label table, or each task's own table."""

from __future__ import annotations

import numpy as np

from graftcv.data.tasks import MULTI, Layout
from graftcv.evaluation.metrics import classification_report
from graftcv.evaluation.multilabel import choose_thresholds, multilabel_report

MULTILABEL_HEADLINE = ("map_macro", "map_micro", "f1_micro", "f1_macro", "subset_accuracy", "hamming_loss")


def outputs_report(truth: np.ndarray, probs: np.ndarray, layout: Layout, thresholds: np.ndarray | None = None) -> dict:
    """Per task: a multi-label report (at `thresholds`, else the layout's own) or a classification report of the
    task's slice; `headline` holds the numbers a summary shows (for several tasks, each task's and their mean)."""
    truth, probs = np.asarray(truth), np.asarray(probs, dtype=float)
    cut = layout.thresholds() if thresholds is None else np.asarray(thresholds, dtype=float)
    tasks = {}
    for task, part in zip(layout.tasks, layout.slices, strict=True):
        if task.kind == MULTI:
            tasks[task.name] = multilabel_report(truth[:, part], probs[:, part], list(task.classes), cut[part])
        else:
            tasks[task.name] = classification_report(truth[:, part].argmax(1), probs[:, part], list(task.classes))
        tasks[task.name]["kind"] = task.kind
    if len(layout.tasks) == 1:
        report = dict(tasks[layout.tasks[0].name])
        report["headline"] = {k: report[k] for k in MULTILABEL_HEADLINE}
    else:
        headline = {}
        for name, found in tasks.items():
            keys = MULTILABEL_HEADLINE[:3] if found["kind"] == MULTI else ("accuracy", "macro_f1")
            headline |= {f"{name}_{k}": found[k] for k in keys}
        scores = [found["map_macro"] if found["kind"] == MULTI else found["accuracy"] for found in tasks.values()]
        headline["mean_task_score"] = float(np.mean(scores))
        report = {"n": int(len(truth)), "tasks": tasks, "headline": headline}
    report["kind"] = layout.kind
    return report


def tuned_layout(truth: np.ndarray, probs: np.ndarray, layout: Layout) -> Layout:
    """The layout with each multi-label task's thresholds chosen on these (validation) images."""
    cut = layout.thresholds()
    for task, part in zip(layout.tasks, layout.slices, strict=True):
        if task.kind == MULTI:
            cut[part] = choose_thresholds(np.asarray(truth)[:, part], np.asarray(probs)[:, part])
    return layout.with_thresholds(cut)


HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece")


def report_for(truth: np.ndarray, probs: np.ndarray, classes: list[str], layout: Layout | None = None) -> dict:
    """A classification report (one label per image) or, with a layout, the report of its tasks."""
    if layout is None:
        return classification_report(truth, probs, classes)
    return outputs_report(truth, probs, layout)


def headline_metric(layout: Layout | None) -> str:
    """The one number that ranks models: accuracy, macro mAP for one multi-label task, or the mean of several
    tasks' scores (each task's accuracy, or macro mAP for a multi-label one)."""
    if layout is None:
        return "accuracy"
    return "map_macro" if len(layout.tasks) == 1 else "mean_task_score"


def headline(report: dict) -> dict:
    """The few numbers a summary and the artifact record of a report."""
    return dict(report["headline"]) if "headline" in report else {k: report[k] for k in HEADLINE_METRICS}
