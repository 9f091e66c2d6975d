"""scikit-learn heads exported to tensors (graftcv.heads): the tensor head must reproduce the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graftcv import GraftcvError
from graftcv.heads.export import export_pipeline, fit_probe
from graftcv.heads.ops import TensorHead
from graftcv.heads.sklearn import HEADS, make_sklearn_head


def _features(n_classes: int, per_class: int = 20, dim: int = 16, seed: int = 0):
    """Overlapping Gaussian blobs: separable enough to learn, mixed enough for non-trivial probabilities."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.5, (n_classes, dim))
    x = np.concatenate([c + rng.normal(0, 1.0, (per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(n_classes), per_class)
    order = rng.permutation(len(y))
    return x[order] * 3 + 5, y[order]  # off-centre, not unit scale: the scaler matters


def _tensor_probs(pipeline, x, y, n_classes):
    priors = np.bincount(y, minlength=n_classes) / len(y)
    head = TensorHead(export_pipeline(pipeline, n_classes, priors))
    return head(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("kind", HEADS)
def test_tensor_head_matches_pipeline(kind, n_classes):
    x, y = _features(n_classes)
    x_new = _features(n_classes, per_class=10, seed=1)[0]  # unseen points too
    pipeline = make_sklearn_head(kind, seed=0).fit(x, y)
    for data in (x, x_new):
        probs = _tensor_probs(pipeline, data, y, n_classes)
        assert probs.shape == (len(data), n_classes)
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
        if kind == "svm":  # LinearSVC has no probabilities: the ranking must agree
            assert np.array_equal(probs.argmax(1), pipeline.predict(data))
        else:
            expected = pipeline.predict_proba(data)
            assert np.abs(probs - expected).max() < 1e-5
            # not a degenerate comparison: some predictions on unseen points are far from certain
            assert data is x or (expected.max(1) < 0.9).any()


@pytest.mark.parametrize("kind", ["logreg", "rf", "mlp"])
def test_tensor_head_with_pca_matches_pipeline(kind):
    x, y = _features(3)
    pipeline = make_sklearn_head(kind, seed=0, pca=5).fit(x, y)
    assert np.abs(_tensor_probs(pipeline, x, y, 3) - pipeline.predict_proba(x)).max() < 1e-5


def test_state_round_trip_and_fit_probe():
    x, y = _features(3)
    head = fit_probe("gb", x, y, 3, seed=0, pca=4)
    tensors, spec = head.state()
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    import json

    spec = json.loads(json.dumps(spec))  # the spec must be plain JSON
    again = TensorHead.from_state(tensors, spec)
    inputs = torch.from_numpy(x)
    assert torch.equal(head(inputs), again(inputs))
    assert (head(inputs).argmax(1).numpy() == y).mean() > 0.8


def test_probe_errors():
    x, y = _features(2, per_class=5)
    with pytest.raises(GraftcvError, match="--pca 50"):
        fit_probe("logreg", x, y, 2, pca=50)
    with pytest.raises(GraftcvError, match="Unknown head"):
        make_sklearn_head("xgboost")
    with pytest.raises(GraftcvError, match="Every class"):
        fit_probe("logreg", x, y, 3)  # a class without training data
