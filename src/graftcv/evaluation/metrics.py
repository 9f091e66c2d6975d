"""Classification metrics, calibration, rich rendering and file export from labels and class probabilities."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

ECE_BINS = 15
PROB_EPS = 1e-15
MAX_CONFUSED = 10


def _validate(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and label range; return int64 labels and float64 probabilities."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must have shape (n, C) with n={y.shape[0]}, got {p.shape}")
    if p.shape[1] != len(classes):
        raise ValueError(f"probs has {p.shape[1]} columns but {len(classes)} classes were given")
    if len(classes) < 2:
        raise ValueError("need at least 2 classes")
    if y.shape[0] == 0:
        raise ValueError("cannot evaluate an empty set")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y_true must hold integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= len(classes):
        raise ValueError(f"y_true values must lie in [0, {len(classes) - 1}]")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or inf")
    return y.astype(np.int64), p


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-1 expected calibration error over equal-width confidence bins.

    scikit-learn has no ECE (only calibration_curve for the binary case), so it is computed here:
    sum over bins of |accuracy(bin) - mean confidence(bin)| weighted by the bin's share of samples.
    Bins are (lo, hi]; a confidence of exactly 0 falls into the first bin.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        mask = bins == b
        ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], topk: tuple[int, ...] = (3, 5)
) -> dict:
    """Compute a JSON-serializable metrics report from integer labels and (n, C) class probabilities.

    Predictions are the argmax of ``probs``. Per-class metrics, the confusion matrix and the weighted
    averages cover all C classes. Macro averages follow scikit-learn's default and average over the
    classes that occur in ``y_true`` or in the predictions, so a class that is absent from the test set
    and never predicted does not count as a zero. ``top{k}_accuracy`` is reported only for k < C.
    """
    y, p = _validate(y_true, probs, classes)
    n_classes = len(classes)
    labels = list(range(n_classes))
    y_pred = p.argmax(axis=1)

    prec, rec, f1, support = precision_recall_fscore_support(y, y_pred, labels=labels, average=None, zero_division=0)
    present = sorted(set(y.tolist()) | set(y_pred.tolist()))
    macro = precision_recall_fscore_support(y, y_pred, labels=present, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y, y_pred, labels=labels, average="weighted", zero_division=0)
    with warnings.catch_warnings():
        # Predicting a class that is absent from y_true is legitimate here; sklearn warns about it.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(y, y_pred)
    accuracy = float(accuracy_score(y, y_pred))

    report: dict[str, Any] = {
        "n": int(y.shape[0]),
        "accuracy": accuracy,
        "balanced_accuracy": float(balanced),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "weighted_precision": float(weighted[0]),
        "weighted_recall": float(weighted[1]),
        "weighted_f1": float(weighted[2]),
    }
    for k in topk:
        if k >= n_classes:
            continue
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        # top-1 is plain accuracy; sklearn also rejects 2-column scores for binary targets.
        score = accuracy if k == 1 else top_k_accuracy_score(y, p, k=k, labels=labels)
        report[f"top{k}_accuracy"] = float(score)

    # Clip away exact zeros and renormalise so rows still sum to one (sklearn checks this).
    clipped = np.clip(p, PROB_EPS, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    report["log_loss"] = float(log_loss(y, clipped, labels=labels))
    report["ece"] = expected_calibration_error(y, p)

    report["per_class"] = [
        {
            "class": str(name),
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]

    cm = confusion_matrix(y, y_pred, labels=labels)
    row_sums = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    report["confusion_matrix"] = cm.astype(int).tolist()
    report["confusion_matrix_normalized"] = cm_norm.astype(float).tolist()

    off_diag = [(int(cm[t, q]), t, q) for t in labels for q in labels if t != q and cm[t, q] > 0]
    off_diag.sort(key=lambda item: (-item[0], item[1], item[2]))
    report["most_confused"] = [
        {"true": str(classes[t]), "predicted": str(classes[q]), "count": count}
        for count, t, q in off_diag[:MAX_CONFUSED]
    ]
    return report


def report_table(report: dict, title: str = "Evaluation") -> Table:
    """Render per-class precision/recall/F1/support plus macro and weighted averages as a rich Table."""
    table = Table(title=title)
    table.add_column("class", style="bold")
    for name in ("precision", "recall", "f1", "support"):
        table.add_column(name, justify="right")
    rows = report["per_class"]
    for i, row in enumerate(rows):
        table.add_row(
            str(row["class"]),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
            end_section=i == len(rows) - 1,
        )
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        table.add_row(
            label,
            f"{report[f'{key}_precision']:.3f}",
            f"{report[f'{key}_recall']:.3f}",
            f"{report[f'{key}_f1']:.3f}",
            str(report["n"]),
            style="italic",
        )
    return table


def summary_line(report: dict) -> str:
    """One-line human summary of the headline metrics."""
    return (
        f"accuracy {report['accuracy']:.3f} · balanced {report['balanced_accuracy']:.3f} · "
        f"macro-F1 {report['macro_f1']:.3f} · log-loss {report['log_loss']:.3f} · "
        f"ECE {report['ece']:.3f} (n={report['n']})"
    )


def write_report(report: dict, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """Write metrics JSON, per-class CSV and confusion-matrix CSV into ``out_dir``; return paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / f"{prefix}metrics.json",
        "per_class": out / f"{prefix}per_class.csv",
        "confusion": out / f"{prefix}confusion_matrix.csv",
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    fields = ["class", "precision", "recall", "f1", "support"]
    with paths["per_class"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in report["per_class"]:
            writer.writerow({key: row[key] for key in fields})

    names = [row["class"] for row in report["per_class"]]
    with paths["confusion"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\pred", *names])
        for name, counts in zip(names, report["confusion_matrix"], strict=True):
            writer.writerow([name, *counts])
    return paths
