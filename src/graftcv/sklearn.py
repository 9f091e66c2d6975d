"""`GraftClassifier`: graftcv's `fit` as a scikit-learn estimator over images (paths, PIL images or arrays)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from graftcv.data import DataSplits, ImageSet
from graftcv.errors import GraftcvError
from graftcv.fitting import fit
from graftcv.model import load

# `fit` settings the estimator takes as parameters of its own; any other TrainConfig field goes in `settings`.
PARAMETERS = ("strategy", "model", "head", "epochs", "size", "lr", "batch_size", "seed")


class GraftClassifier(ClassifierMixin, BaseEstimator):
    """An image classifier trained by `graftcv.fit`, usable wherever scikit-learn takes a classifier: `Pipeline`,
    `cross_val_score`, `GridSearchCV`, `CalibratedClassifierCV`.

    X is a sequence of images: file paths, PIL images or (H, W, 3) uint8 arrays. Parameters left at None take
    graftcv's defaults (the strategy's epochs and lr, the model's input size); `settings` passes any other
    `graftcv train` setting (e.g. `{"augment": "strong"}`). `fit` holds out a stratified `val_fraction` of its
    images as graftcv's validation set (early stopping, thresholds); `out` keeps the run directory (default: a
    temporary one, removed once the model is loaded).

    Learned: `classes_` (sorted, y's own values), `model_` (a `graftcv.Model`), `summary_` (the run's summary).
    """

    def __init__(
        self,
        strategy: str = "finetune",
        model: str = "tf_efficientnet_lite0",
        head: str | None = None,
        epochs: int | None = None,
        size: int | None = None,
        lr: float | None = None,
        batch_size: int = 32,
        seed: int = 0,
        val_fraction: float = 0.2,
        settings: dict | None = None,
        out: str | None = None,
    ) -> None:
        self.strategy = strategy
        self.model = model
        self.head = head
        self.epochs = epochs
        self.size = size
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.val_fraction = val_fraction
        self.settings = settings
        self.out = out

    def fit(self, X, y) -> GraftClassifier:  # noqa: N803 (scikit-learn's names)
        images, targets = list(X), np.asarray(y)
        if len(images) != len(targets):
            raise ValueError(f"X has {len(images)} images but y has {len(targets)} labels.")
        self.classes_ = np.unique(targets)
        if len(self.classes_) < 2:
            raise ValueError("GraftClassifier needs at least two classes in y.")
        names = [str(label) for label in targets]
        kept, held = train_test_split(
            np.arange(len(images)), test_size=self.val_fraction, stratify=names, random_state=self.seed
        )
        scratch = Path(tempfile.mkdtemp(prefix="graftcv-sklearn-"))
        try:
            paths = _as_paths(images, scratch / "images")
            train = ImageSet([paths[i] for i in sorted(kept)], [names[i] for i in sorted(kept)])
            val = ImageSet([paths[i] for i in sorted(held)], [names[i] for i in sorted(held)])
            splits = DataSplits.from_sets(train, val, source="scikit-learn X, y")
            out = Path(self.out) if self.out else scratch / "run"
            run = fit(splits, out=out, overwrite=True, **self._fit_settings())
            self.model_ = run.model if run.model is not None else load(out / "model")
            self.summary_ = dict(run.summary)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # the network's outputs in classes_' order: graftcv names classes by their text, scikit-learn by value
        order = {name: i for i, name in enumerate(self.model_.classes)}
        self._columns = np.array([order[str(label)] for label in self.classes_])
        return self

    def predict_proba(self, X) -> np.ndarray:  # noqa: N803
        check_is_fitted(self, "model_")
        images = list(X)
        scratch = Path(tempfile.mkdtemp(prefix="graftcv-sklearn-"))
        try:
            pil = bool(images) and all(isinstance(i, Image.Image) for i in images)
            inputs = images if pil else [str(p) for p in _as_paths(images, scratch)]
            probs, names = self.model_.predict_proba(inputs, batch_size=self.batch_size)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if len(names) != len(images):
            raise GraftcvError(f"{len(images) - len(names)} of the {len(images)} images could not be read.")
        return probs[:, self._columns]

    def predict(self, X) -> np.ndarray:  # noqa: N803
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _fit_settings(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in PARAMETERS if getattr(self, name) is not None}
        return {"progress": False} | (self.settings or {}) | given

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images, not a numeric matrix
        tags.input_tags.string = True  # file paths
        tags.non_deterministic = True  # threads and augmentation; a fixed seed repeats on one machine
        return tags


def _as_paths(images: list, folder: Path) -> list[Path]:
    """Each image as a file: paths as given, PIL images and arrays written as PNG under `folder`."""
    paths = []
    for index, image in enumerate(images):
        if isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise ValueError(f"X[{index}] is {str(image)!r}, which is not a file.")
            paths.append(Path(image))
            continue
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        if not isinstance(image, Image.Image):
            raise ValueError(f"X[{index}] is a {type(image).__name__}: give image paths, PIL images or arrays.")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:06d}.png"
        image.convert("RGB").save(path)
        paths.append(path)
    return paths
