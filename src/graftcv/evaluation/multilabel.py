"""Metrics of multi-label predictions (pure functions of 0/1 truth, probabilities and per-label thresholds), and
the per-label decision thresholds chosen on validation data."""

from __future__ import annotations

import math

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
DEFAULT_THRESHOLD = 0.5


def f1_by_threshold(truth: np.ndarray, probs: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """One label's F1 (0/1 truth, probabilities) at every threshold of `grid`."""
    positives, scores = np.asarray(truth, bool), []
    for threshold in grid:
        predicted = np.asarray(probs, float) >= threshold
        denominator = predicted.sum() + positives.sum()
        scores.append(2 * np.sum(predicted & positives) / denominator if denominator else 0.0)
    return np.array(scores)


def choose_thresholds(truth: np.ndarray, probs: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the threshold of `grid` with the best F1 on these (validation) images; ties go to the one
    nearest 0.5, and a label with no positive image here keeps 0.5 (nothing to choose from)."""
    truth, probs = np.asarray(truth, bool), np.asarray(probs, float)
    chosen = np.full(truth.shape[1], DEFAULT_THRESHOLD)
    for label in range(truth.shape[1]):
        if not truth[:, label].any():
            continue
        scores = f1_by_threshold(truth[:, label], probs[:, label], grid)
        candidates = np.flatnonzero(scores == scores.max())
        chosen[label] = grid[candidates[np.argmin(np.abs(grid[candidates] - DEFAULT_THRESHOLD))]]
    return chosen


def multilabel_report(truth: np.ndarray, probs: np.ndarray, labels: list[str],
                      thresholds: np.ndarray | None = None) -> dict:  # fmt: skip
    """mAP (macro over labels with a positive image, and micro), per-label precision/recall/F1/AP/support, micro
    and macro F1, subset accuracy and Hamming loss, at `thresholds` (0.5 for every label when None)."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    truth = np.asarray(truth, dtype=int)
    probs = np.asarray(probs, dtype=float)
    cut = np.full(truth.shape[1], DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, float)
    predicted = (probs >= cut).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    per_label, aps = [], []
    for index, name in enumerate(labels):
        ap = float(average_precision_score(truth[:, index], probs[:, index])) if support[index] else math.nan
        if support[index]:
            aps.append(ap)
        per_label.append({"label": name, "precision": float(precision[index]), "recall": float(recall[index]),
                          "f1": float(f1[index]), "ap": ap, "support": int(support[index]),
                          "threshold": float(cut[index])})  # fmt: skip
    return {
        "n": int(len(truth)),
        "map_macro": float(np.mean(aps)) if aps else math.nan,
        "map_micro": float(average_precision_score(truth, probs, average="micro")) if truth.any() else math.nan,
        "f1_micro": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "per_label": per_label,
    }
