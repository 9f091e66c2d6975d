"""scikit-learn heads on frozen features by name, exported to plain tensors so an artifact never needs pickle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from graftcv.errors import GraftcvError
from graftcv.heads.ops import TensorHead, affine
from graftcv.heads.trees import export_trees
from graftcv.registry import Registry

# Standardized 1000+-dimensional features need strong L2: 3-fold CV on flowers5 / ants_bees / sign_digits
# (Lite0, 224 px) gave 0.745 / 0.955 / 0.935 at C = 0.01 against 0.699 / 0.950 / 0.935 at sklearn's C = 1,
# and the fit converges several times faster.
LOGREG_C = 0.01


@dataclass(frozen=True)
class SklearnHead:
    """`build(seed, c)`: an unfitted classifier (it follows a StandardScaler and an optional PCA);
    `export(fitted, n_classes, class_priors)`: the fitted classifier as head ops ending in probabilities."""

    name: str
    help: str
    build: Callable[[int, float], object]
    export: Callable[[object, int, np.ndarray | None], list[dict]]


HEADS: Registry[SklearnHead] = Registry("head")
register_head = HEADS.register


def _linear(step, n_classes: int, priors) -> list[dict]:
    weight, bias = np.atleast_2d(step.coef_), np.atleast_1d(step.intercept_)
    if weight.shape[0] == 1:  # binary: one logit z, and softmax([0, z]) = [1 - σ(z), σ(z)]
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([[0.0], bias])
    return [affine(weight, bias), {"op": "softmax"}]


def _mlp(step, n_classes: int, priors) -> list[dict]:
    ops = []
    for i, (weight, bias) in enumerate(zip(step.coefs_, step.intercepts_, strict=True)):
        ops.append(affine(weight.T, bias))
        if i < len(step.coefs_) - 1:
            ops.append({"op": "relu"})
    return [*ops, {"op": "softmax" if n_classes > 2 else "sigmoid2"}]


def _forest(step, n_classes: int, priors) -> list[dict]:
    return [export_trees(step.estimators_, 1.0 / len(step.estimators_))]


def _boosting(step, n_classes: int, priors) -> list[dict]:
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


def _logreg(seed: int, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=LOGREG_C * c, max_iter=2000)


def _svm(seed: int, c: float):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c * 0.01, max_iter=5000, random_state=seed)


def _rf(seed: int, c: float):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=seed)


def _gb(seed: int, c: float):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=100, max_depth=3, subsample=0.8, max_features="sqrt", random_state=seed
    )


def _mlp_classifier(seed: int, c: float):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, max_iter=300, random_state=seed)


register_head(SklearnHead("logreg", "logistic regression, strong L2 (the default)", _logreg, _linear))
register_head(SklearnHead("svm", "linear SVM (probabilities from its margins)", _svm, _linear))
register_head(SklearnHead("rf", "random forest of 300 trees", _rf, _forest))
register_head(SklearnHead("gb", "gradient boosting, 100 stages of depth 3", _gb, _boosting))
register_head(SklearnHead("mlp", "one hidden layer of 256, early stopping", _mlp_classifier, _mlp))


def make_sklearn_head(kind: str, seed: int = 0, pca: int | None = None, c: float = 1.0):
    """A scikit-learn pipeline: standardize → optional PCA → the registered classifier, named like the head."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    head = HEADS.lookup(kind)
    steps = [("scale", StandardScaler())]
    if pca:
        steps.append(("pca", PCA(n_components=pca, random_state=seed)))
    steps.append((head.name, head.build(seed, c)))
    return Pipeline(steps)


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
