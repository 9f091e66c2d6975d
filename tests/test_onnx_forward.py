"""Long inference passes of a trained network on onnxruntime: the same probabilities as PyTorch, PyTorch when the
export disagrees, and no export for short passes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import timm
import torch

import graftcv.onnx_forward as onnx_forward
from graftcv.artifact import Classifier
from graftcv.backbones import data_config_for
from graftcv.model import Model


@pytest.fixture
def model_and_paths(make_folder):
    torch.manual_seed(0)
    network = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    meta = {"classes": ["a", "b", "c"], "data_config": data_config_for(network, size=32)}
    paths = sorted(str(p) for p in make_folder(classes=2, per_class=5).rglob("*.jpg"))
    return Model(Classifier(network), meta, device="cpu"), paths


def test_long_passes_run_on_onnx_with_torch_s_probabilities(model_and_paths, monkeypatch, caplog) -> None:
    model, paths = model_and_paths
    on_torch, _ = model.predict_proba(paths, batch_size=4)
    monkeypatch.setattr(onnx_forward, "MIN_IMAGES", 1)
    with caplog.at_level(logging.INFO, logger="graftcv"):
        on_onnx, _ = model.predict_proba(paths, batch_size=4)
    assert "Exported the network to ONNX" in caplog.text
    assert np.abs(on_onnx - on_torch).max() < 1e-4
    assert not np.array_equal(on_onnx, on_torch)  # the numbers really came from another runtime


def test_an_export_that_disagrees_gives_torch_s_numbers(model_and_paths, monkeypatch, caplog) -> None:
    model, paths = model_and_paths
    on_torch, _ = model.predict_proba(paths, batch_size=4)
    monkeypatch.setattr(onnx_forward, "MIN_IMAGES", 1)
    monkeypatch.setattr(onnx_forward, "TOLERANCE", -1.0)  # no export can pass
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        fallback, _ = model.predict_proba(paths, batch_size=4)
    assert "Inference runs on PyTorch" in caplog.text
    assert np.array_equal(fallback, on_torch)


def test_short_passes_do_not_export(model_and_paths, monkeypatch) -> None:
    model, paths = model_and_paths
    monkeypatch.setattr(onnx_forward.CheckedOnnx, "__init__", lambda *a: pytest.fail("exported for 10 images"))
    probs, _ = model.predict_proba(paths, batch_size=4)
    assert probs.shape == (len(paths), 3)
