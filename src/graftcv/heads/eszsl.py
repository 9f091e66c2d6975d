"""ESZSL (Romera-Paredes & Torr, ICML 2015): a closed-form bilinear compatibility between pooled image features
and class attribute vectors, so that a class never seen in training is scored from its attributes alone.

Written here (numpy, a few lines): no well-kept library on PyPI implements it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # gamma and lambda are chosen from these by leave-classes-out CV
MAX_FOLDS = 10


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Eszsl:
    """Fitted compatibility V (features × attributes) and the feature centring it was fitted with."""

    weights: np.ndarray
    mean: np.ndarray
    gamma: float
    lam: float

    def prepare(self, features: np.ndarray) -> np.ndarray:
        return unit_rows(np.asarray(features, np.float64) - self.mean)

    def scores(self, features: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """(n images, k candidate classes): x V s for each candidate's attribute vector s."""
        return self.prepare(features) @ self.weights @ unit_rows(np.asarray(attributes, np.float64)).T


def fit_eszsl(features: np.ndarray, targets: np.ndarray, attributes: np.ndarray, gamma: float = 1.0,
              lam: float = 1.0) -> Eszsl:  # fmt: skip
    """V = (XᵀX + γI)⁻¹ Xᵀ Y S (SᵀS + λI)⁻¹ with X the centred, L2-normalized features (n × d), Y the labels in
    {-1, 1} (n × z) and S the L2-normalized attribute rows of the training classes (z × a)."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    x = unit_rows(x - mean)
    s = unit_rows(np.asarray(attributes, np.float64))
    y = -np.ones((len(x), len(s)))
    y[np.arange(len(x)), targets] = 1.0
    left = np.linalg.solve(x.T @ x + gamma * np.eye(x.shape[1]), x.T @ y @ s)
    weights = left @ np.linalg.inv(s.T @ s + lam * np.eye(s.shape[1]))
    return Eszsl(weights, mean, gamma, lam)


def mean_class_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy per class, averaged over classes (the zero-shot convention: large classes do not dominate)."""
    return float(np.mean([(predicted[truth == c] == c).mean() for c in np.unique(truth)]))


def choose_and_fit(features: np.ndarray, targets: np.ndarray, attributes: np.ndarray, seed: int = 0) -> Eszsl:
    """γ and λ by leave-classes-out cross-validation on the training classes (pairs of them play the unseen
    classes, up to MAX_FOLDS pairs), then the fit on all of them. `targets` index the rows of `attributes`."""
    classes = np.unique(targets)
    pairs = list(itertools.combinations(classes, 2)) if len(classes) >= 4 else []
    if len(pairs) > MAX_FOLDS:
        pairs = [pairs[i] for i in np.random.default_rng(seed).choice(len(pairs), MAX_FOLDS, replace=False)]
    best, best_score = (1.0, 1.0), -1.0
    for gamma, lam in itertools.product(GRID, GRID):
        if not pairs:
            break
        scores = []
        for held in pairs:
            seen = np.setdiff1d(classes, held)
            inside = np.isin(targets, seen)
            remap = {c: i for i, c in enumerate(seen)}
            model = fit_eszsl(features[inside], np.array([remap[t] for t in targets[inside]]), attributes[seen],
                              gamma, lam)  # fmt: skip
            out = ~inside
            predicted = np.asarray(held)[model.scores(features[out], attributes[list(held)]).argmax(1)]
            scores.append(mean_class_accuracy(predicted, targets[out]))
        if np.mean(scores) > best_score:
            best, best_score = (gamma, lam), float(np.mean(scores))
    return fit_eszsl(features, targets, attributes, *best)
