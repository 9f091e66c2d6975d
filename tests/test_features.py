"""Frozen-backbone features and their on-disk cache (graftcv.features)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import timm
import torch
from conftest import COLOURS, write_image

from graftcv.backbones import data_config_for
from graftcv.data import build_transform, load_rgb
from graftcv.features import FeatureStats, extract_features, model_fingerprint


@pytest.fixture
def setup(make_folder):
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    root = make_folder(classes=2, per_class=3)
    paths = sorted(root.rglob("*.jpg"))
    config = data_config_for(model, size=32)
    model_id = {"name": "resnet10t", "weights": model_fingerprint(model)}
    return model, paths, config, model_id


class Counter:
    """Wraps model.forward_features and counts the images it sees."""

    def __init__(self, model):
        self.images = 0
        self._forward = model.forward_features

    def __call__(self, x):
        self.images += len(x)
        return self._forward(x)


def _extract(model, paths, config, model_id, **kwargs):
    return extract_features(model, paths, config, model_id, batch_size=4, num_workers=0, progress=False, **kwargs)


def test_features_match_a_direct_forward(setup, _isolated_cache):
    model, paths, config, model_id = setup
    model.train()
    features = _extract(model, paths, config, model_id)
    assert features.shape == (len(paths), model.num_features)
    assert features.dtype == np.float32
    assert model.training, "extract_features restores the training mode"

    transform = build_transform(config)
    batch = torch.stack([transform(load_rgb(p, draft_size=32)) for p in paths])
    model.eval()
    with torch.no_grad():
        direct = model.forward_head(model.forward_features(batch), pre_logits=True)
    assert np.abs(np.asarray(features) - direct.numpy()).max() < 1e-4
    assert np.abs(direct.numpy()).max() > 0  # not a comparison of zeros
    # the cache lives under $GRAFTCV_CACHE
    assert list((_isolated_cache / "features").glob("*/*.npy"))


def test_second_call_is_served_from_cache(setup, monkeypatch):
    model, paths, config, model_id = setup
    first = np.array(_extract(model, paths, config, model_id))

    def boom(x):
        raise AssertionError("the model ran although the features were cached")

    monkeypatch.setattr(model, "forward_features", boom)
    again = _extract(model, paths, config, model_id)
    assert np.array_equal(np.asarray(again), first)
    with pytest.raises(AssertionError, match="the model ran"):
        _extract(model, paths, config, model_id, use_cache=False)


def _assert_recomputed(model, paths, config, model_id, monkeypatch, expected_images):
    counter = Counter(model)
    with monkeypatch.context() as patch:
        patch.setattr(model, "forward_features", counter)
        result = _extract(model, paths, config, model_id)
    assert counter.images == expected_images
    return result


def test_rewritten_image_invalidates_the_cache(setup, monkeypatch):
    model, paths, config, model_id = setup
    before = np.array(_extract(model, paths, config, model_id))
    old_size = paths[0].stat().st_size
    write_image(paths[0], COLOURS[4], seed=99, size=56)  # other pixels, other bytes
    assert paths[0].stat().st_size != old_size
    after = _assert_recomputed(model, paths, config, model_id, monkeypatch, 1)  # that image alone
    assert not np.allclose(after[0], before[0])
    assert np.allclose(after[1:], before[1:], atol=1e-5)


def test_touched_image_invalidates_the_cache(setup, monkeypatch):
    model, paths, config, model_id = setup
    _extract(model, paths, config, model_id)
    stat = paths[2].stat()
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    _assert_recomputed(model, paths, config, model_id, monkeypatch, 1)


def test_size_and_model_id_invalidate_the_cache(setup, monkeypatch):
    model, paths, config, model_id = setup
    _extract(model, paths, config, model_id)
    bigger = dict(config, input_size=(3, 40, 40))
    _assert_recomputed(model, paths, bigger, model_id, monkeypatch, len(paths))
    other_id = dict(model_id, weights="0" * 32)
    _assert_recomputed(model, paths, config, other_id, monkeypatch, len(paths))
    # and the original key still hits
    _assert_recomputed(model, paths, config, model_id, monkeypatch, 0)


def test_fingerprint_follows_the_weights(setup):
    model, _, _, model_id = setup
    head = {"fc.weight", "fc.bias"}
    base = model_fingerprint(model, head)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    assert model_fingerprint(model, head) == base  # the classifier does not change the features
    with torch.no_grad():
        model.conv1[0].weight.add_(1.0)
    assert model_fingerprint(model, head) != base


def test_subsets_and_supersets_reuse_cached_rows(setup, monkeypatch, make_folder):
    """Folds and few-shot subsets read the rows they need; only images never seen are computed."""
    model, paths, config, model_id = setup
    full = np.array(_extract(model, paths, config, model_id))
    part = _assert_recomputed(model, paths[::-2], config, model_id, monkeypatch, 0)
    assert np.array_equal(part, full[::-2])
    extra = sorted(make_folder("more", classes=1, per_class=2, seed=7).rglob("*.jpg"))
    mixed = [extra[0], *paths, extra[1]]
    grown = _assert_recomputed(model, mixed, config, model_id, monkeypatch, 2)
    assert np.array_equal(grown[1:-1], full)
    alone = np.array(_extract(model, extra, config, model_id, use_cache=True))
    assert np.allclose(grown[[0, -1]], alone, atol=1e-6)


def test_stats_report_what_was_computed(setup):
    model, paths, config, model_id = setup
    stats = FeatureStats()
    _extract(model, paths, config, model_id, stats=stats)
    assert (stats.computed, stats.cached) == (len(paths), 0) and stats.images_per_second > 0
    _extract(model, paths, config, model_id, stats=stats)
    assert (stats.computed, stats.cached) == (0, len(paths))


def test_damaged_index_is_ignored_and_recomputed(setup, monkeypatch, _isolated_cache):
    model, paths, config, model_id = setup
    _extract(model, paths, config, model_id)
    for index in (_isolated_cache / "features").glob("*/*.json"):
        index.write_text("{not json")
    _assert_recomputed(model, paths, config, model_id, monkeypatch, len(paths))


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "no-checksum"])
def test_a_damaged_cache_entry_is_recomputed_with_one_warning(setup, _isolated_cache, caplog, damage):
    import json
    import logging

    model, paths, config, model_id = setup
    first = np.asarray(_extract(model, paths, config, model_id)).copy()
    (shard,) = _isolated_cache.rglob("*.npy")
    index = shard.with_suffix(".json")
    if damage == "overwrite":  # the numbers changed, the file's size did not
        data = np.load(shard)
        np.save(shard, data * 0.5)
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:200])
    else:  # an entry from before checksums
        record = json.loads(index.read_text())
        record.pop("sha256")
        index.write_text(json.dumps(record))
    stats = FeatureStats()
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        again = _extract(model, paths, config, model_id, stats=stats)
    assert stats.computed == len(paths) and stats.cached == 0
    assert np.abs(np.asarray(again) - first).max() < 1e-5
    assert caplog.text.count("damaged feature-cache") == 1
    stats = FeatureStats()
    _extract(model, paths, config, model_id, stats=stats)
    assert stats.cached == len(paths)  # and the fresh entry is trusted again
