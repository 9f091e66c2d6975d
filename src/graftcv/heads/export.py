"""Fitted scikit-learn heads as tensor ops: a TensorHead reproduces the pipeline, with no pickle anywhere."""

from __future__ import annotations

import numpy as np
import torch

from graftcv.errors import GraftcvError
from graftcv.heads.ops import TensorHead, affine
from graftcv.heads.sklearn import HEADS, make_sklearn_head
from graftcv.heads.trees import export_trees


def linear(step, n_classes: int, priors) -> list[dict]:
    weight, bias = np.atleast_2d(step.coef_), np.atleast_1d(step.intercept_)
    if weight.shape[0] == 1:  # binary: one logit z, and softmax([0, z]) = [1 - σ(z), σ(z)]
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([[0.0], bias])
    return [affine(weight, bias), {"op": "softmax"}]


def mlp(step, n_classes: int, priors) -> list[dict]:
    ops = []
    for i, (weight, bias) in enumerate(zip(step.coefs_, step.intercepts_, strict=True)):
        ops.append(affine(weight.T, bias))
        if i < len(step.coefs_) - 1:
            ops.append({"op": "relu"})
    return [*ops, {"op": "softmax" if n_classes > 2 else "sigmoid2"}]


def forest(step, n_classes: int, priors) -> list[dict]:
    return [export_trees(step.estimators_, 1.0 / len(step.estimators_))]


def boosting(step, n_classes: int, priors) -> list[dict]:
    if priors is None:
        raise GraftcvError("Exporting gradient boosting needs the training class priors.")
    priors = np.asarray(priors, dtype=np.float64)  # the model's initial raw prediction
    binary = n_classes == 2
    init = np.array([np.log(priors[1] / priors[0])]) if binary else np.log(np.clip(priors, 1e-12, None))
    tree_op = export_trees([tree for stage in step.estimators_ for tree in stage], step.learning_rate)
    tree_op["columns"] = step.estimators_.shape[1]  # trees per stage, one per raw output
    return [
        tree_op,
        {"op": "bias", "bias": torch.as_tensor(init, dtype=torch.float32)},
        {"op": "softmax" if n_classes > 2 else "sigmoid2"},
    ]


def export_pipeline(pipeline, n_classes: int, class_priors: np.ndarray | None = None) -> list[dict]:
    """The fitted pipeline of `make_sklearn_head` as ops on tensors; `TensorHead` evaluates them."""
    ops: list[dict] = []
    for name, step in pipeline.steps:
        if name == "scale":
            ops.append(affine(np.diag(1.0 / step.scale_), -step.mean_ / step.scale_))
        elif name == "pca":
            ops.append(affine(step.components_, -step.components_ @ step.mean_))
        elif name in HEADS:
            ops += HEADS[name].export(step, n_classes, class_priors)
        else:
            raise GraftcvError(f"Cannot export the pipeline step {name!r} ({type(step).__name__}) to tensors.")
    return ops


def fit_probe(
    kind: str, features: np.ndarray, targets: np.ndarray, n_classes: int, seed: int = 0, pca: int | None = None
) -> TensorHead:
    """Fit a scikit-learn head on features and return it as a tensor head."""
    if pca and pca > min(features.shape):
        raise GraftcvError(f"--pca {pca} is larger than the features allow ({min(features.shape)}).")
    pipeline = make_sklearn_head(kind, seed=seed, pca=pca)
    pipeline.fit(np.asarray(features, dtype=np.float32), targets)
    classifier = pipeline[-1]
    if len(classifier.classes_) != n_classes:
        raise GraftcvError("Every class needs training images for a linear-probe head.")
    priors = np.bincount(targets, minlength=n_classes) / len(targets)
    return TensorHead(export_pipeline(pipeline, n_classes, priors))
