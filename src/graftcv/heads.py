"""scikit-learn heads on frozen features, exported to plain tensors so an artifact never needs pickle."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from graftcv.errors import GraftcvError

HEADS = ("logreg", "svm", "rf", "gb", "mlp")
# Standardized 1000+-dimensional features need strong L2: 3-fold CV on flowers5 / ants_bees / sign_digits
# (Lite0, 224 px) gave 0.745 / 0.955 / 0.935 at C = 0.01 against 0.699 / 0.950 / 0.935 at sklearn's C = 1,
# and the fit converges several times faster.
LOGREG_C = 0.01


def make_sklearn_head(kind: str, seed: int = 0, pca: int | None = None, c: float = 1.0):
    """A scikit-learn pipeline: standardize → optional PCA → classifier."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    classifiers = {
        "logreg": lambda: LogisticRegression(C=LOGREG_C * c, max_iter=2000),
        "svm": lambda: LinearSVC(C=c * 0.01, max_iter=5000, random_state=seed),
        "rf": lambda: RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=seed),
        "gb": lambda: GradientBoostingClassifier(
            n_estimators=100, max_depth=3, subsample=0.8, max_features="sqrt", random_state=seed
        ),
        "mlp": lambda: MLPClassifier(
            hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, max_iter=300, random_state=seed
        ),
    }
    if kind not in classifiers:
        raise GraftcvError(f"Unknown head {kind!r}: choose one of {', '.join(HEADS)}.")
    steps = [StandardScaler()]
    if pca:
        steps.append(PCA(n_components=pca, random_state=seed))
    steps.append(classifiers[kind]())
    return make_pipeline(*steps)


def _affine(weight: np.ndarray, bias: np.ndarray) -> dict:
    return {
        "op": "affine",
        "weight": torch.as_tensor(np.asarray(weight, dtype=np.float32)),
        "bias": torch.as_tensor(np.asarray(bias, dtype=np.float32)),
    }


def _trees(trees: list, scale: float) -> dict:
    """Decision trees as padded arrays: (T, nodes) left/right/feature/threshold and (T, nodes, out) values."""
    n_nodes = max(t.tree_.node_count for t in trees)
    n_out = trees[0].tree_.value.shape[-1] if trees[0].tree_.value.ndim == 3 else 1

    def pad(array: np.ndarray, fill: float) -> np.ndarray:
        shape = (n_nodes, *array.shape[1:])
        padded = np.full(shape, fill, dtype=array.dtype)
        padded[: len(array)] = array
        return padded

    values = []
    for t in trees:
        value = t.tree_.value.reshape(t.tree_.node_count, -1)
        if value.shape[1] > 1:  # classifier leaves hold class fractions
            value = value / value.sum(axis=1, keepdims=True)
        values.append(pad(value, 0.0))
    return {
        "op": "trees",
        "left": torch.as_tensor(np.stack([pad(t.tree_.children_left, -1) for t in trees])),
        "right": torch.as_tensor(np.stack([pad(t.tree_.children_right, -1) for t in trees])),
        "feature": torch.as_tensor(np.stack([pad(t.tree_.feature, 0) for t in trees]).clip(min=0)),
        "threshold": torch.as_tensor(np.stack([pad(t.tree_.threshold, 0.0) for t in trees]).astype(np.float32)),
        "value": torch.as_tensor(np.stack(values).astype(np.float32)),
        "scale": scale,
        "n_out": n_out,
    }


def export_pipeline(pipeline, n_classes: int, class_priors: np.ndarray | None = None) -> list[dict]:
    """The fitted pipeline as ops on tensors; `TensorHead` evaluates them to class probabilities."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    ops: list[dict] = []
    for step in pipeline:
        if isinstance(step, StandardScaler):
            ops.append(_affine(np.diag(1.0 / step.scale_), -step.mean_ / step.scale_))
        elif isinstance(step, PCA):
            ops.append(_affine(step.components_, -step.components_ @ step.mean_))
        elif isinstance(step, (LogisticRegression, LinearSVC)):
            weight, bias = step.coef_, step.intercept_
            if weight.shape[0] == 1:  # binary: one logit z, and softmax([0, z]) = [1 - σ(z), σ(z)]
                weight = np.vstack([np.zeros_like(weight), weight])
                bias = np.concatenate([[0.0], bias])
            ops += [_affine(weight, bias), {"op": "softmax"}]
        elif isinstance(step, MLPClassifier):
            for i, (weight, bias) in enumerate(zip(step.coefs_, step.intercepts_, strict=True)):
                ops.append(_affine(weight.T, bias))
                if i < len(step.coefs_) - 1:
                    ops.append({"op": "relu"})
            ops.append({"op": "softmax" if n_classes > 2 else "sigmoid2"})
        elif isinstance(step, RandomForestClassifier):
            ops += [_trees(step.estimators_, 1.0 / len(step.estimators_))]
        elif isinstance(step, GradientBoostingClassifier):
            if class_priors is None:
                raise GraftcvError("Exporting gradient boosting needs the training class priors.")
            priors = np.asarray(class_priors, dtype=np.float64)  # the model's initial raw prediction
            binary = n_classes == 2
            init = np.array([np.log(priors[1] / priors[0])]) if binary else np.log(np.clip(priors, 1e-12, None))
            trees = [tree for stage in step.estimators_ for tree in stage]
            tree_op = _trees(trees, step.learning_rate)
            tree_op["columns"] = step.estimators_.shape[1]  # trees per stage, one per raw output
            ops += [
                tree_op,
                {"op": "bias", "bias": torch.as_tensor(init, dtype=torch.float32)},
                {"op": "softmax" if n_classes > 2 else "sigmoid2"},
            ]
        else:
            raise GraftcvError(f"Cannot export {type(step).__name__} to tensors.")
    return ops


def _eval_trees(op: dict, x: torch.Tensor) -> torch.Tensor:
    n_trees = op["left"].shape[0]
    node = torch.zeros(n_trees, x.shape[0], dtype=torch.long)
    tree_index = torch.arange(n_trees)[:, None]
    while True:
        left = op["left"][tree_index, node]
        active = left >= 0
        if not active.any():
            break
        feature = op["feature"][tree_index, node]
        go_left = x.T[feature, torch.arange(x.shape[0])[None, :]] <= op["threshold"][tree_index, node]
        nxt = torch.where(go_left, left, op["right"][tree_index, node])
        node = torch.where(active, nxt, node)
    values = op["value"][tree_index, node]  # (T, n, out)
    columns = int(op.get("columns", 0))
    if columns:  # boosting: tree t adds to raw output t % columns
        summed = values[..., 0].reshape(-1, columns, x.shape[0]).sum(0).T
        return summed * op["scale"]
    return values.sum(0) * op["scale"]


class TensorHead(nn.Module):
    """Evaluates exported head ops on features; returns class probabilities."""

    def __init__(self, ops: list[dict]) -> None:
        super().__init__()
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for op in self.ops:
            kind = op["op"]
            if kind == "affine":
                x = x @ op["weight"].T + op["bias"]
            elif kind == "bias":
                x = x + op["bias"]
            elif kind == "relu":
                x = x.clamp_min(0)
            elif kind == "l2norm":
                x = nn.functional.normalize(x, dim=-1)
            elif kind == "softmax":
                x = x.softmax(-1)
            elif kind == "sigmoid2":
                p = torch.sigmoid(x[:, -1:])
                x = torch.cat([1 - p, p], dim=1)
            elif kind == "trees":
                x = _eval_trees(op, x)
        return x

    def state(self) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """(tensors, JSON-able op list naming them) for safetensors + graftcv.json."""
        tensors, spec = {}, []
        for i, op in enumerate(self.ops):
            entry = {}
            for key, value in op.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"probe.{i}.{key}"] = value.contiguous()
                    entry[key] = f"probe.{i}.{key}"
                else:
                    entry[key] = value
            spec.append(entry)
        return tensors, spec

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], spec: list[dict]) -> TensorHead:
        ops = [
            {k: tensors[v] if isinstance(v, str) and v.startswith("probe.") else v for k, v in entry.items()}
            for entry in spec
        ]
        return cls(ops)


# Cosine similarities lie in [-1, 1]; scaled by 10 the softmax can express confident predictions (a cosine
# gap of 0.3 gives 20:1 odds) without becoming hard on a single training image per class.
PROTOTYPE_TEMPERATURE = 10.0


def fit_prototype(
    features: np.ndarray, targets: np.ndarray, n_classes: int, temperature: float = PROTOTYPE_TEMPERATURE
) -> TensorHead:
    """Nearest class centroid with cosine similarity, as tensor ops: centre on the training mean, L2-normalize,
    compare with the re-normalized mean of each class's normalized features, softmax(temperature × cosine)."""
    x = np.asarray(features, dtype=np.float64)
    counts = np.bincount(targets, minlength=n_classes)
    if (counts == 0).any():
        raise GraftcvError("Every class needs training images for a prototype head.")
    mean = x.mean(axis=0)
    centred = x - mean
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([unit[targets == c].mean(axis=0) for c in range(n_classes)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return TensorHead(
        [
            {"op": "bias", "bias": torch.as_tensor(-mean, dtype=torch.float32)},
            {"op": "l2norm"},
            _affine(temperature * centroids, np.zeros(n_classes)),
            {"op": "softmax"},
        ]
    )


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
