"""How far apart two domains are in a feature space: the proxy A-distance of a linear domain classifier."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, folds: int = 5) -> dict:
    """Ben-David et al.'s proxy A-distance, 2 (1 - 2ε), with ε the cross-validated error of a linear classifier
    told to separate source from target features (balanced: the larger domain is subsampled). 0 means the
    domains are indistinguishable, 2 perfectly separable."""
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target))
    if n < folds:
        raise ValueError(f"Need at least {folds} images of each domain, got {n}.")
    source = source[rng.choice(len(source), n, replace=False)]
    target = target[rng.choice(len(target), n, replace=False)]
    features = np.concatenate([source, target]).astype(np.float64)
    domains = np.r_[np.zeros(n), np.ones(n)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = float(cross_val_score(classifier, features, domains, cv=folds).mean())
    error = 1.0 - accuracy
    return {"proxy_a_distance": 2.0 * (1.0 - 2.0 * min(error, 0.5)), "domain_accuracy": accuracy, "per_domain": n}
