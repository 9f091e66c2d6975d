"""scikit-learn heads on frozen features by name; fitted, they are exported to tensors (`graftcv.heads.export`).

Listing the heads imports neither scikit-learn nor torch: the builders import scikit-learn when called, and
the exporters are named lazily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graftcv.registry import Registry, lazy

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
    export: Callable[[object, int, object], list[dict]]


HEADS: Registry[SklearnHead] = Registry("head")
register_head = HEADS.register


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


for _name, _help, _build, _export in (
    ("logreg", "logistic regression, strong L2 (the default)", _logreg, "linear"),
    ("svm", "linear SVM (probabilities from its margins)", _svm, "linear"),
    ("rf", "random forest of 300 trees", _rf, "forest"),
    ("gb", "gradient boosting, 100 stages of depth 3", _gb, "boosting"),
    ("mlp", "one hidden layer of 256, early stopping", _mlp_classifier, "mlp"),
):
    register_head(SklearnHead(_name, _help, _build, lazy(f"graftcv.heads.export:{_export}")))


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
