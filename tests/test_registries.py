"""Extension points: a strategy, a head, a CAM method, an optimizer and a head operation each plug in with one
registration, and reach `graftcv train`, `compare`, `explain` and artifacts with no other change."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from pytorch_grad_cam import GradCAMElementWise
from typer.testing import CliRunner

import graftcv
from graftcv.cli import app
from graftcv.compare import compare
from graftcv.explain.methods import CAM_METHODS, CamMethod, register_cam_method, user_methods
from graftcv.heads.export import linear
from graftcv.heads.ops import OPS
from graftcv.heads.sklearn import HEADS, SklearnHead, register_head
from graftcv.registry import Registry, lazy
from graftcv.strategies import STRATEGIES, Strategy, register_strategy
from graftcv.training.optim import OPTIMIZERS, Optimizer, register_optimizer
from graftcv.training.phase import Phase

CLI_TINY = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--batch-size", "8", "--workers", "0"]


@pytest.fixture
def data(make_folder):
    return make_folder(classes=2, per_class=6)


@pytest.fixture
def last_layer() -> Iterator[str]:
    """A strategy no graftcv module knows: the classifier and the last backbone group, one phase."""
    register_strategy(
        Strategy(
            "last-layer",
            "head and one group",
            lambda s: [Phase("last-layer", s.epochs, s.lr, trainable=2)],
            epochs=2,
            lr=1e-3,
            defaults={"patience": 7},
        )
    )
    yield "last-layer"
    STRATEGIES.unregister("last-layer")


def test_registry_lookup_explains_unknown_names():
    registry: Registry = Registry("widget")
    registry.register(CamMethod("a", "first", lazy("pytorch_grad_cam:GradCAMElementWise")))
    assert registry["a"].cam.target is GradCAMElementWise  # imported when first needed
    assert list(registry) == ["a"] and "a" in registry and registry.lookup("a").help == "first"
    with pytest.raises(graftcv.GraftcvError, match="Unknown widget 'b': choose one of a"):
        registry.lookup("b")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(CamMethod("a", "again", GradCAMElementWise))


def test_a_registered_strategy_trains_through_the_cli_and_compare(last_layer, data, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(data), "--strategy", last_layer, *CLI_TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == last_layer and config["epochs"] == 2 and config["patience"] == 7  # its defaults
    assert [phase["name"] for phase in config["phases"]] == [last_layer]
    assert json.loads((out / "summary.json").read_text())["epochs"] >= 1
    assert (out / "model" / "model.safetensors").is_file()

    tiny = dict(model="resnet10t", pretrained=False, size=32, batch_size=8, num_workers=0)
    comparison = compare(data, strategies=f"prototype,{last_layer}", folds=2, out=tmp_path / "compare", **tiny)
    assert sorted({row["strategy"] for row in comparison.rows}) == sorted(["prototype", last_layer])
    assert all(row["epochs"] >= 1 for row in comparison.rows if row["strategy"] == last_layer)


def test_scratch_is_a_strategy_with_its_recipe(data, tmp_path, tiny):
    tiny.pop("pretrained")
    run = graftcv.fit(data, out=tmp_path / "scratch", strategy="scratch", **tiny)
    assert run.config["pretrained"] is False and run.config["augment"] == "strong" and run.config["bn"] == "train"
    assert run.config["lr"] == pytest.approx(3e-3) and run.config["patience"] == 10
    with pytest.raises(graftcv.GraftcvError, match="scratch strategy runs with pretrained=False"):
        graftcv.fit(data, out=tmp_path / "again", strategy="scratch", pretrained=True, **tiny)


def test_a_registered_head_fits_through_the_cli_and_compare(data, tmp_path):
    from sklearn.linear_model import RidgeClassifier

    register_head(SklearnHead("ridge", "ridge classifier", lambda seed, c: RidgeClassifier(alpha=10.0), linear))
    try:
        out = tmp_path / "run"
        args = ["train", str(data), "--strategy", "linear-probe", "--head", "ridge", *CLI_TINY, "--out", str(out)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        meta = json.loads((out / "model" / "graftcv.json").read_text())
        assert meta["head"] == "ridge" and meta["probe"][-1]["op"] == "softmax"
        model = graftcv.load(out / "model")  # the head is tensors: a new process needs no registration
        assert len(model.predict(str(data))) == 12
        tiny = dict(model="resnet10t", pretrained=False, size=32, num_workers=0, head="ridge")
        comparison = compare(data, strategies="linear-probe", folds=2, out=tmp_path / "compare", **tiny)
        assert len(comparison.rows) == 2
    finally:
        HEADS.unregister("ridge")


def test_a_registered_cam_method_explains_through_the_cli(data, tmp_path, tiny):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="head", **tiny)
    register_cam_method(CamMethod("elementwise", "Grad-CAM element-wise", GradCAMElementWise))
    try:
        assert "elementwise" in user_methods(fast_only=True)
        out = tmp_path / "cams"
        args = ["explain", str(run.out_dir / "model"), str(data), "--method", "elementwise", "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--limit", "2"])
        assert result.exit_code == 0, result.output
        assert len(list(out.glob("*.png"))) == 2
        results = run.model.explain([str(next(data.rglob("*.jpg")))], method="elementwise")
        assert results[0].method == "elementwise" and results[0].cam.shape == (32, 32)
    finally:
        CAM_METHODS.unregister("elementwise")


def test_a_registered_optimizer_is_used(data, tmp_path, tiny):
    used = []

    def build(groups, settings):
        used.append(len(groups))
        return torch.optim.Adagrad(groups)

    register_optimizer(Optimizer("adagrad", "Adagrad", build))
    try:
        run = graftcv.fit(data, out=tmp_path / "run", strategy="full", optimizer="adagrad", **tiny)
        assert used and run.config["optimizer"] == "adagrad"
        with pytest.raises(graftcv.GraftcvError, match="Unknown optimizer 'adamax': --optimizer takes one of"):
            graftcv.fit(data, out=tmp_path / "bad", strategy="full", optimizer="adamax", **tiny)
    finally:
        OPTIMIZERS.unregister("adagrad")


def test_an_unknown_head_operation_in_an_artifact_is_refused(data, tmp_path, tiny):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="prototype", **tiny)
    meta_path = run.out_dir / "model" / "graftcv.json"
    meta = json.loads(meta_path.read_text())
    assert [op["op"] for op in meta["probe"]] == ["bias", "l2norm", "affine", "softmax"]
    assert set(op["op"] for op in meta["probe"]) <= set(OPS)
    meta["probe"][3]["op"] = "softermax"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(graftcv.GraftcvError, match="operation this graftcv does not know \\('softermax'\\)"):
        graftcv.load(run.out_dir / "model")
