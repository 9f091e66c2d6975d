"""Strategies end to end on a tiny network, and their freezing / learning-rate rules one by one."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import timm
import torch

import graftcv
from graftcv.backbones import create_backbone, layer_groups
from graftcv.data import discover
from graftcv.fitting import seed_everything
from graftcv.strategies import STRATEGIES, Phase, StrategySettings, plan
from graftcv.training.freezing import group_learning_rates, set_trainable, trainable_groups
from graftcv.training.module import OptimSettings, TransferModule


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import write_class_folders

    return write_class_folders(tmp_path_factory.mktemp("strategies") / "data", classes=3, per_class=7)


def initial_model(**settings):
    """The network `fit` starts from: same seed, same architecture, same random init."""
    seed_everything(settings.get("seed", 0))
    return create_backbone("resnet10t", 3, pretrained=False, drop_rate=0.2, drop_path_rate=0.1, size=32).model


def trained_state(run) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in run.model.network.backbone.state_dict().items()}


def read_history(run) -> list[dict]:
    with (run.out_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


# --- every strategy runs end to end ------------------------------------------------------------------

CASES = {
    "linear-probe": ({}, []),
    "head": ({}, ["head"]),
    "head-on-features": ({"strategy": "head", "augment": "none"}, ["head"]),
    "partial": ({"unfreeze": 1}, ["partial"]),
    "full": ({}, ["full"]),
    # one batch per epoch: 2 epochs x 2 batches would be the 4-step OneCycle crash (see below)
    "progressive": ({"epochs": 2, "batch_size": 16}, ["progressive", "progressive"]),
    "finetune": ({}, ["head", "finetune"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_strategy_fits(case, data, tmp_path, tiny):
    extra, phases = dict(CASES[case][0]), CASES[case][1]
    strategy = extra.pop("strategy", case)
    run = graftcv.fit(data, out=tmp_path / "run", strategy=strategy, **{**tiny, **extra})

    summary = json.loads((run.out_dir / "summary.json").read_text())
    assert summary["strategy"] == strategy == run.summary["strategy"]
    assert summary["n_train"] + summary["n_val"] == 21
    assert summary["epochs"] == len(phases)
    history = read_history(run)
    assert [row["phase"] for row in history] == phases
    for row in history:
        assert math.isfinite(float(row["train_loss"])) and math.isfinite(float(row["val_loss"]))

    # validation probabilities: valid, and the ones the saved model gives again
    assert 0.0 <= summary["val_accuracy"] <= 1.0 and math.isfinite(summary["val_log_loss"])
    splits = discover(data, val_fraction=0.2, seed=0)
    probs, _ = run.model.predict_proba(splits.val.paths)
    assert probs.shape == (summary["n_val"], 3)
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    again = run.model.evaluate_images(splits.val)
    assert again["accuracy"] == pytest.approx(summary["val_accuracy"])
    assert again["log_loss"] == pytest.approx(summary["val_log_loss"], abs=1e-3)

    before, after = initial_model(), trained_state(run)
    stem = layer_groups(before)[0]
    backbone_keys = [k for k in before.state_dict() if not k.startswith("fc.")]
    if strategy in ("head", "linear-probe"):  # the backbone is frozen (BatchNorm statistics included)
        for key in backbone_keys:
            assert torch.equal(before.state_dict()[key], after[key]), key
    elif strategy == "partial":  # unfreeze=1: the last stage trains, the stem does not
        groups = layer_groups(before)
        assert all(torch.equal(before.state_dict()[n], after[n]) for n in stem)
        assert any(not torch.equal(before.state_dict()[n], after[n]) for n in groups[-2])
        assert all(torch.equal(before.state_dict()[n], after[n]) for g in groups[:-2] for n in g)
    elif strategy == "progressive":  # 2 epochs: the classifier, then one more group; never the stem
        assert [int(row["trainable_groups"]) for row in history] == [1, 2]
        assert all(torch.equal(before.state_dict()[n], after[n]) for n in stem)
        groups = layer_groups(before)
        moved = any(not torch.equal(before.state_dict()[n], after[n]) for n in groups[-2])
        assert moved == (summary["best_epoch"] == 2)  # the weights of the best epoch are kept
    else:  # the whole network trains: the stem moves
        assert any(not torch.equal(before.state_dict()[n], after[n]) for n in stem)


def test_unknown_strategy_is_an_error(data, tmp_path, tiny):
    with pytest.raises(graftcv.GraftcvError, match="Unknown strategy 'bogus'"):
        graftcv.fit(data, out=tmp_path / "run", strategy="bogus", **tiny)
    with pytest.raises(graftcv.GraftcvError, match="Unknown setting"):
        graftcv.fit(data, out=tmp_path / "run", epochz=3, **tiny)


# --- linear probe heads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "pca"), [("logreg", None), ("svm", None), ("rf", None), ("gb", None), ("mlp", None), ("logreg", 4)]
)
def test_linear_probe_heads(head, pca, data, tmp_path, tiny):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="linear-probe", head=head, pca=pca, **tiny)
    assert run.summary["epochs"] == 0 and run.history == []
    assert run.model.meta["head"] == head
    ops = [op["op"] for op in run.model.network.probe.ops]
    assert ops.count("affine") >= (2 if head in ("logreg", "svm", "mlp") else 1)
    if pca:
        first, second = run.model.network.probe.ops[:2]
        assert tuple(second["weight"].shape) == (pca, first["weight"].shape[0])
    # colours are trivially separable: the probe learns them even on random-init features
    assert run.summary["val_accuracy"] >= 0.8
    probs, _ = run.model.predict_proba(sorted(data.rglob("*.jpg"))[:4])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


# --- BatchNorm statistics ------------------------------------------------------------------------------------


def _running_means(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith("running_mean")}


@pytest.mark.parametrize("bn", ["freeze", "train"])
def test_bn_statistics(bn, data, tmp_path, tiny):
    before = _running_means(initial_model().state_dict())
    assert before
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", bn=bn, **tiny)
    after = _running_means(trained_state(run))
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    if bn == "freeze":
        assert len(unchanged) == len(before)
    else:
        assert unchanged == []


def test_bn_train_keeps_frozen_groups_statistics(data, tmp_path, tiny):
    model = initial_model()
    groups = layer_groups(model)
    before = _running_means(model.state_dict())
    run = graftcv.fit(data, out=tmp_path / "run", strategy="partial", unfreeze=1, bn="train", **tiny)
    after = _running_means(trained_state(run))
    trainable_prefixes = {n.rsplit(".", 1)[0] for n in groups[-2]}
    for key in before:
        moved = not torch.equal(before[key], after[key])
        assert moved == (key.rsplit(".", 1)[0] in trainable_prefixes), key


# --- determinism -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["head", "full"])
def test_same_seed_same_result(strategy, data, tmp_path, tiny):
    runs = [graftcv.fit(data, out=tmp_path / f"run{i}", strategy=strategy, seed=7, **tiny) for i in range(2)]
    assert runs[0].summary["val_accuracy"] == runs[1].summary["val_accuracy"]
    assert runs[0].summary["val_log_loss"] == runs[1].summary["val_log_loss"]
    losses = [[(r["train_loss"], r["val_loss"]) for r in read_history(run)] for run in runs]
    assert losses[0] == losses[1] and losses[0]
    if strategy == "head":  # the comparison is not vacuous: another seed gives other losses
        other = graftcv.fit(data, out=tmp_path / "other", strategy=strategy, seed=8, **tiny)
        assert [(r["train_loss"], r["val_loss"]) for r in read_history(other)] != losses[0]


@pytest.mark.parametrize("batch_size", [5, 6, 9, 18])  # 4, 3, 2 and 1 optimizer steps over 18 images
def test_short_onecycle_phase_trains(data, tmp_path, tiny, batch_size):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", **{**tiny, "batch_size": batch_size})
    assert run.summary["n_train"] == 18 and run.summary["epochs"] == 1


# --- unit level: plans, freezing, learning rates ------------------------------------------------------------------

SETTINGS = StrategySettings(
    epochs=4, head_epochs=3, lr=1e-3, head_lr=3e-3, lr_decay=0.5, unfreeze=2, unfreeze_every=2, augment="light"
)


def test_plans():
    expected = {"linear-probe", "prototype", "head", "partial", "full", "progressive", "finetune", "scratch"}
    assert set(STRATEGIES) == expected
    assert plan("linear-probe", SETTINGS) == [] and plan("prototype", SETTINGS) == []
    assert [name for name in STRATEGIES if STRATEGIES[name].closed_form] == ["linear-probe", "prototype"]
    (scratch,) = plan("scratch", SETTINGS)
    assert scratch.trainable is None and STRATEGIES["scratch"].fixed["pretrained"] is False
    (head,) = plan("head", SETTINGS)
    assert head.trainable == 1 and head.lr == 3e-3 and not head.on_features
    assert plan("head", StrategySettings(**{**SETTINGS.__dict__, "augment": "none"}))[0].on_features
    assert plan("partial", SETTINGS)[0].trainable == 3
    assert plan("full", SETTINGS)[0].trainable is None
    first, second = plan("finetune", SETTINGS)
    assert (first.trainable, first.on_features, first.epochs) == (1, True, 3)
    assert (second.trainable, second.lr_decay, second.epochs) == (None, 0.5, 4)
    with pytest.raises(graftcv.GraftcvError, match="Unknown strategy"):
        plan("everything", SETTINGS)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=3)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_set_trainable_head_and_partial(net):
    groups = layer_groups(net)
    set_trainable(net, groups, 1)
    assert _trainable(net) == {"fc.weight", "fc.bias"}

    module = TransferModule(net, groups, OptimSettings())
    module.start_phase(plan("partial", SETTINGS)[0])  # unfreeze=2 → classifier + 2 groups
    assert _trainable(net) == {n for g in groups[-3:] for n in g}
    assert not _trainable(net) & {n for g in groups[:-3] for n in g}
    module.start_phase(plan("full", SETTINGS)[0])
    assert _trainable(net) == {n for n, _ in net.named_parameters()}


def test_progressive_unfreezing(net):
    phase = plan("progressive", SETTINGS)[0]  # unfreeze_every=2
    n = 6
    assert [trainable_groups(phase, n, e) for e in range(12)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    every_epoch = Phase("p", 3, 1e-3, trainable=1, unfreeze_every=1)
    assert [trainable_groups(every_epoch, 4, e) for e in range(6)] == [1, 2, 3, 4, 4, 4]
    assert trainable_groups(Phase("full", 1, 1e-3), 5, 3) == 5
    assert trainable_groups(Phase("partial", 1, 1e-3, trainable=9), 5) == 5

    groups = layer_groups(net)
    module = TransferModule(net, groups, OptimSettings())
    module.start_phase(every_epoch)
    for epoch in range(3):
        module.update_trainable(epoch)
        assert _trainable(net) == {name for g in groups[len(groups) - 1 - epoch :] for name in g}


def test_group_learning_rates_decay_towards_the_stem():
    rates = group_learning_rates(Phase("x", 1, 1e-2, lr_decay=0.5), 4)
    assert rates == pytest.approx([1.25e-3, 2.5e-3, 5e-3, 1e-2])
    assert group_learning_rates(Phase("x", 1, 1e-2), 3) == pytest.approx([1e-2] * 3)


def test_param_groups_weight_decay_and_rates(net):
    groups = layer_groups(net)
    module = TransferModule(net, groups, OptimSettings(weight_decay=0.05))
    module.start_phase(Phase("finetune", 1, 1e-2, lr_decay=0.5))
    param_groups = module._param_groups()
    named = {id(p): n for n, p in net.named_parameters()}
    seen = [named[id(p)] for g in param_groups for p in g["params"]]
    assert sorted(seen) == sorted(named.values()) and len(seen) == len(set(seen))
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    for g in param_groups:
        ndims = {p.ndim for p in g["params"]}
        assert ndims <= {0, 1} or 1 not in ndims and 0 not in ndims  # not mixed
        assert g["weight_decay"] == (0.0 if max(ndims) <= 1 else 0.05)
        (index,) = {group_of[named[id(p)]] for p in g["params"]}
        assert g["lr"] == pytest.approx(1e-2 * 0.5 ** (len(groups) - 1 - index))
    biases = [g for g in param_groups if any(named[id(p)] == "fc.bias" for p in g["params"])]
    assert biases[0]["weight_decay"] == 0.0

    module.start_phase(Phase("partial", 1, 1e-2, trainable=2, lr_decay=0.5))
    only = {named[id(p)] for g in module._param_groups() for p in g["params"]}
    assert only == {n for g in groups[-2:] for n in g}


def test_test_split_is_evaluated(make_split_folder, tmp_path, tiny):
    root = make_split_folder(test="test", classes=2, n_train=5, n_val=3)
    run = graftcv.fit(root, out=tmp_path / "run", strategy="linear-probe", **tiny)
    assert run.summary["n_train"] == 10 and run.summary["n_val"] == 6 and run.summary["n_test"] == 6
    report = json.loads((run.out_dir / "test_metrics.json").read_text())
    assert report["n"] == 6
    assert run.summary["test_accuracy"] == report["accuracy"] >= 0.8
