"""The onnxruntime feature pass: same features as PyTorch, a cached export checked, rebuilt when altered, and
PyTorch whenever the export disagrees."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import timm
import torch

import graftcv.feature_onnx as feature_onnx
from graftcv.backbones import data_config_for
from graftcv.features import FeatureStats, extract_features, model_fingerprint


@pytest.fixture
def setup(make_folder, monkeypatch):
    monkeypatch.setattr(feature_onnx, "MIN_IMAGES_TO_EXPORT", 0)  # export even for a handful of images
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    paths = sorted(make_folder(classes=2, per_class=5).rglob("*.jpg"))
    config = data_config_for(model, size=32)
    return model, paths, config, {"name": "resnet10t", "weights": model_fingerprint(model)}


def _extract(model, paths, config, model_id, **kwargs):
    stats = FeatureStats()
    features = extract_features(
        model, paths, config, model_id, batch_size=4, num_workers=0, progress=False, stats=stats, **kwargs
    )
    return np.asarray(features), stats


def _export_files(cache):
    """(backbone.onnx, backbone.json) of the one feature space, or () before any export."""
    files = {path.suffix: path for path in cache.rglob("onnx/backbone.*")}
    return (files[".onnx"], files[".json"]) if files else ()


def test_onnx_features_match_torch_and_the_check_is_recorded(setup, _isolated_cache):
    model, paths, config, model_id = setup
    on_torch, stats = _extract(model, paths, config, model_id, onnx=False, use_cache=False)
    assert stats.runtime == "torch"
    on_onnx, stats = _extract(model, paths, config, model_id, use_cache=False)
    assert stats.runtime == "onnx" and stats.computed == len(paths)
    assert np.abs(on_onnx - on_torch).max() <= feature_onnx.TOLERANCE and np.abs(on_torch).max() > 0
    onnx_file, record_file = _export_files(_isolated_cache)
    record = json.loads(record_file.read_text())
    assert record["max_abs_diff"] <= feature_onnx.TOLERANCE and "rejected" not in record
    assert onnx_file.suffix == ".onnx" and len(record["sha256"]) == 64


def test_an_altered_export_is_rebuilt(setup, _isolated_cache, caplog):
    model, paths, config, model_id = setup
    _extract(model, paths, config, model_id, use_cache=False)
    onnx_file, _ = _export_files(_isolated_cache)
    original = onnx_file.read_bytes()
    onnx_file.write_bytes(original[:1000] + b"\0" * 64 + original[1064:])  # same size, other bytes
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        again, stats = _extract(model, paths, config, model_id, use_cache=False)
    assert "does not match its checksum" in caplog.text
    assert stats.runtime == "onnx" and onnx_file.read_bytes() == original  # exported again, the same model
    on_torch, _ = _extract(model, paths, config, model_id, onnx=False, use_cache=False)
    assert np.abs(again - on_torch).max() <= feature_onnx.TOLERANCE


def test_an_export_that_disagrees_falls_back_to_torch_for_good(setup, _isolated_cache, caplog, monkeypatch):
    model, paths, config, model_id = setup
    monkeypatch.setattr(feature_onnx, "TOLERANCE", -1.0)  # no export can pass
    on_torch, _ = _extract(model, paths, config, model_id, onnx=False, use_cache=False)
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        features, stats = _extract(model, paths, config, model_id, use_cache=False)
    assert stats.runtime == "torch" and "Features run on PyTorch" in caplog.text
    assert np.array_equal(features, on_torch)  # every row, the first batch included, from PyTorch
    _, record_file = _export_files(_isolated_cache)
    assert json.loads(record_file.read_text())["rejected"] is True
    _, stats = _extract(model, paths, config, model_id, use_cache=False)
    assert stats.runtime == "torch"  # not tried again


def test_small_jobs_do_not_pay_for_an_export(setup, _isolated_cache, monkeypatch):
    model, paths, config, model_id = setup
    monkeypatch.setattr(feature_onnx, "MIN_IMAGES_TO_EXPORT", len(paths) + 1)
    _, stats = _extract(model, paths, config, model_id, use_cache=False)
    assert stats.runtime == "torch" and not _export_files(_isolated_cache)
