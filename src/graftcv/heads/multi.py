"""A linear-probe head for several labels per image: one-vs-rest per multi-label label, multinomial per single task,
all as one affine map and a `segments` activation (a TensorHead, no pickle)."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from graftcv.data.tasks import MULTI, Layout
from graftcv.errors import GraftcvError
from graftcv.heads.export import export_pipeline
from graftcv.heads.ops import TensorHead, affine
from graftcv.heads.sklearn import HEADS, make_sklearn_head

LINEAR_HEADS = ("logreg", "svm")  # heads with a weight row per label, which one affine map holds
CONSTANT_LOGIT = 12.0  # a label every training image has (or none has): the head says so with near certainty


def _binary(base, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weight row and bias of one label's logit."""
    if y.min() == y.max():
        return np.zeros(z.shape[1]), CONSTANT_LOGIT if y[0] else -CONSTANT_LOGIT
    found = clone(base).fit(z, y)
    return np.ravel(found.coef_), float(np.ravel(found.intercept_)[0])


def _multinomial(base, z: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    found = clone(base).fit(z, y)
    if len(found.classes_) != n:
        raise GraftcvError("Every class of every task needs training images for a linear-probe head.")
    weight, bias = np.atleast_2d(found.coef_), np.atleast_1d(found.intercept_)
    if weight.shape[0] == 1:  # binary: softmax([0, z]) = [1 - σ(z), σ(z)]
        weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
    return weight, bias


def fit_outputs_probe(features: np.ndarray, targets: np.ndarray, layout: Layout, kind: str = "logreg",
                      seed: int = 0, pca: int | None = None) -> TensorHead:  # fmt: skip
    """Standardize (and PCA) once, then a linear classifier per label or task, exported as tensor ops."""
    HEADS.lookup(kind)
    if kind not in LINEAR_HEADS:
        raise GraftcvError(
            f"With several labels per image the linear-probe head is one of {', '.join(LINEAR_HEADS)}, not {kind}."
        )
    pipeline = make_sklearn_head(kind, seed=seed, pca=pca)
    transform = Pipeline(pipeline.steps[:-1]).fit(np.asarray(features, dtype=np.float32))
    z = transform.transform(np.asarray(features, dtype=np.float32))
    base, targets = pipeline.steps[-1][1], np.asarray(targets)
    weights, biases = [], []
    for task, part in zip(layout.tasks, layout.slices, strict=True):
        y = targets[:, part]
        if task.kind == MULTI:
            for column in range(y.shape[1]):
                weight, bias = _binary(base, z, y[:, column].astype(int))
                weights.append(weight[None])
                biases.append(np.array([bias]))
        else:
            weight, bias = _multinomial(base, z, y.argmax(1), len(task.classes))
            weights.append(weight)
            biases.append(bias)
    ops = export_pipeline(transform, len(layout.outputs))
    ops += [affine(np.vstack(weights), np.concatenate(biases)), {"op": "segments", "segments": layout.segments()}]
    return TensorHead(ops)
