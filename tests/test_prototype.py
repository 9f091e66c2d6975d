"""The prototype strategy: nearest class centroid on frozen features, as tensor ops, trained through `fit`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graftcv
from graftcv.heads.ops import TensorHead
from graftcv.heads.prototype import PROTOTYPE_TEMPERATURE, fit_prototype


def _clusters(n_classes: int = 4, per_class: int = 12, dim: int = 24, seed: int = 0, spread: float = 0.3):
    """Well-separated Gaussian clusters far from the origin (centring matters), with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, (n_classes, dim)) + 10.0
    x = np.concatenate([c + rng.normal(0, spread, (per_class, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_classes), per_class), centres


def _numpy_prototype(train_x, train_y, new_x, n_classes, temperature=PROTOTYPE_TEMPERATURE):
    """The textbook version, written out: centre, normalize, class means, normalize, cosine, softmax."""
    mean = train_x.mean(0)
    unit = (train_x - mean) / np.linalg.norm(train_x - mean, axis=1, keepdims=True)
    centroids = np.stack([unit[train_y == c].mean(0) for c in range(n_classes)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    query = (new_x - mean) / np.linalg.norm(new_x - mean, axis=1, keepdims=True)
    logits = temperature * query @ centroids.T
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def test_prototype_classifies_separated_clusters():
    x, y, centres = _clusters()
    head = fit_prototype(x, y, 4)
    new_x, new_y, _ = _clusters(seed=0, per_class=5)  # same centres, fresh noise
    new_x = new_x + np.random.default_rng(1).normal(0, 0.3, new_x.shape).astype(np.float32)
    probs = head(torch.from_numpy(new_x)).numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)
    assert (probs.argmax(1) == new_y).all()
    assert probs.max(1).min() > 0.5  # confident on clean clusters


def test_tensor_head_equals_numpy_implementation():
    x, y, _ = _clusters(n_classes=3, spread=4.0)  # overlapping: probabilities far from 0 and 1
    new_x = _clusters(n_classes=3, per_class=6, seed=5, spread=4.0)[0]
    expected = _numpy_prototype(x.astype(np.float64), y, new_x.astype(np.float64), 3)
    got = fit_prototype(x, y, 3)(torch.from_numpy(new_x)).numpy()
    assert np.abs(got - expected).max() < 1e-5
    assert (expected.max(1) < 0.95).any()  # a non-trivial comparison


def test_one_image_per_class_and_state_round_trip():
    x, y, _ = _clusters(n_classes=3, per_class=1)
    head = fit_prototype(x, y, 3)
    assert (head(torch.from_numpy(x)).numpy().argmax(1) == y).all()  # each image is its own class centroid
    tensors, spec = head.state()
    json.dumps(spec)  # the op list goes into graftcv.json as is
    assert [op["op"] for op in spec] == ["bias", "l2norm", "affine", "softmax"]
    again = TensorHead.from_state(tensors, spec)
    assert torch.equal(again(torch.from_numpy(x)), head(torch.from_numpy(x)))


def test_prototype_missing_class_is_an_error():
    x, y, _ = _clusters(n_classes=2)
    with pytest.raises(graftcv.GraftcvError, match="Every class"):
        fit_prototype(x, y, 3)


def test_prototype_train_save_load_predict(make_folder, tiny, tmp_path):
    data = make_folder(classes=3, per_class=6)
    run = graftcv.fit(data, out=tmp_path / "run", strategy="prototype", **tiny)
    assert run.summary["epochs"] == 0 and run.history == []
    meta = json.loads((run.out_dir / "model" / "graftcv.json").read_text())
    assert meta["strategy"] == "prototype" and meta["head"] == "prototype" and meta["kind"] == "probe"
    assert not [p for p in (run.out_dir / "model").iterdir() if p.suffix in {".pt", ".pth", ".pkl"}]
    images = sorted(str(p) for p in Path(data).rglob("*.jpg"))
    loaded = graftcv.load(run.out_dir / "model")
    before, _ = run.model.predict_proba(images)
    after, _ = loaded.predict_proba(images)
    assert np.allclose(before, after, atol=1e-6) and np.allclose(after.sum(1), 1.0, atol=1e-5)
    assert loaded.predict(images[0])[0]["class"] in loaded.classes


def _csv(path: Path, images: list[Path]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([str(p), p.parent.name] for p in images)
    return path


def test_one_shot_needs_an_explicit_validation_set(make_folder, tiny, tmp_path):
    data = make_folder(classes=3, per_class=4)
    by_class = [sorted(d.glob("*.jpg")) for d in sorted(data.iterdir())]
    train = _csv(tmp_path / "train.csv", [images[0] for images in by_class])
    val = _csv(tmp_path / "val.csv", [p for images in by_class for p in images[1:]])
    run = graftcv.fit(train, out=tmp_path / "one-shot", val=str(val), strategy="prototype", **tiny)
    assert run.summary["train_counts"] == {"class_0": 1, "class_1": 1, "class_2": 1}
    with pytest.raises(graftcv.GraftcvError, match="fewer than 2 training images.*--val"):
        graftcv.fit(train, out=tmp_path / "no-val", strategy="prototype", **tiny)  # a split would be drawn


def test_find_lr_refuses_prototype(make_folder, tiny):
    with pytest.raises(graftcv.GraftcvError, match="prototype has no learning rate"):
        graftcv.api.find_lr(make_folder(), strategy="prototype", **tiny)
