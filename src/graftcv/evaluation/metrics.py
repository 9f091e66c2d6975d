"""Classification metrics and calibration from labels and class probabilities."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
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
