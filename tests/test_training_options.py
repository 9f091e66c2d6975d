"""Training options end to end on a tiny network: optimizers and schedules, mixup, class balance,
the time limit, and the learning-rate finder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import TINY, write_class_folders

import graftcv
import graftcv.api
from graftcv.training.gradient import _class_weights, _sampler


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("options") / "data", classes=3, per_class=8)


def lrs(run) -> list[float]:
    with (run.out_dir / "metrics.csv").open() as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [("adamw", "onecycle"), ("sgd", "cosine"), ("rmsprop", "step"), ("adamw", "cyclical"), ("sgd", "constant")],
)
def test_optimizer_and_schedule(data, tmp_path, optimizer, schedule):
    settings = {**TINY, "epochs": 3, "patience": 10, "lr": 0.01}
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", optimizer=optimizer, schedule=schedule, **settings)
    rates = lrs(run)
    assert len(rates) == 3
    assert json.loads((run.out_dir / "config.json").read_text())["optimizer"] == optimizer
    if schedule == "constant":
        assert rates == pytest.approx([0.01] * 3)
    elif schedule in ("onecycle", "cosine"):
        assert rates[-1] < max(rates) <= 0.01 + 1e-9  # annealed by the end
    elif schedule == "step":
        assert rates[0] == pytest.approx(0.01) and rates[-1] < rates[0]
    else:
        assert len(set(rates)) > 1  # cyclical moves


def test_mixup_and_cutmix_train(data, tmp_path):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", mixup=0.4, cutmix=1.0, **TINY)
    config = json.loads((run.out_dir / "config.json").read_text())
    assert config["mixup"] == 0.4 and config["cutmix"] == 1.0
    assert 0.0 <= run.summary["val_accuracy"] <= 1.0 and run.summary["epochs"] == 1


def test_class_weights_and_sampler_favour_rare_classes():
    targets = np.array([0] * 30 + [1] * 10)
    weights = _class_weights(targets, 2)
    assert weights[1] / weights[0] == pytest.approx(3.0)
    drawn = np.bincount(targets[list(_sampler(targets, 2, seed=0))], minlength=2)
    assert abs(drawn[0] - drawn[1]) < 0.35 * len(targets)  # about balanced, not 3:1


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_balance_options_train(tmp_path, balance):
    data = tmp_path / "data"
    write_class_folders(data, classes=2, per_class=4)
    write_class_folders(data, classes=1, per_class=16, seed=5)  # class_0 gets 16 images, class_1 keeps 4
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", balance=balance, **TINY)
    assert run.summary["train_counts"]["class_0"] > 3 * run.summary["train_counts"]["class_1"]
    assert run.summary["epochs"] == 1


def test_max_time_stops_early_and_keeps_a_model(data, tmp_path):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", max_time="2s", **{**TINY, "epochs": 500})
    assert 1 <= run.summary["epochs"] < 500
    assert graftcv.load(run.out_dir / "model").predict(str(data / "class_0"))[0]["class"] in run.summary["classes"]


def test_lr_auto_records_the_found_rate(data, tmp_path):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="full", lr="auto", **TINY)
    config = json.loads((run.out_dir / "config.json").read_text())
    assert config["lr_auto"] is True and isinstance(config["lr"], float) and config["lr"] > 0


def test_find_lr_curve(data):
    finding = graftcv.api.find_lr(data, steps=12, strategy="full", **TINY)
    assert len(finding.lrs) == len(finding.losses) >= 10
    assert finding.lrs == sorted(finding.lrs) and finding.lrs[-1] > 100 * finding.lrs[0]
    assert finding.lrs[0] <= finding.suggestion <= finding.lrs[-1]


def test_find_lr_refuses_linear_probe(data):
    with pytest.raises(graftcv.GraftcvError, match="linear-probe has no learning rate"):
        graftcv.api.find_lr(data, strategy="linear-probe", **TINY)


def test_micro_batches_split_the_batch_only_where_the_gradients_stay_the_same():
    from graftcv.config import TrainConfig
    from graftcv.training.gradient import micro_batching
    from graftcv.training.phase import Phase

    images = Phase(name="full", epochs=1, lr=1e-3)
    features = Phase(name="head", epochs=1, lr=1e-3, on_features=True)
    assert micro_batching(TrainConfig(), images) == (16, 2)  # CPU, frozen BatchNorm: same summed gradients
    assert micro_batching(TrainConfig(bn="train"), images) == (32, 1)  # batch statistics would change
    assert micro_batching(TrainConfig(), features) == (32, 1)
    assert micro_batching(TrainConfig(batch_size=24, micro_batch=10), images) == (8, 3)  # a divisor of the batch


def test_accumulated_micro_batches_train_the_same_weights(data, tmp_path):
    from safetensors.torch import load_file

    # 18 training images (three whole batches), plain SGD: summed micro-batch gradients must give the same steps
    settings = {**TINY, "strategy": "full", "epochs": 1, "batch_size": 6, "augment": "none", "dropout": 0.0}
    settings |= {"drop_path": 0.0, "schedule": "constant", "lr": 0.01, "bn": "freeze", "optimizer": "sgd"}
    whole = graftcv.fit(data, out=tmp_path / "whole", micro_batch=6, **settings)
    split = graftcv.fit(data, out=tmp_path / "split", micro_batch=3, **settings)
    a = load_file(str(whole.out_dir / "model" / "model.safetensors"))
    b = load_file(str(split.out_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert json.loads((split.out_dir / "summary.json").read_text())["n_train"] == 18
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    before = graftcv.fit(data, out=tmp_path / "init", micro_batch=6, **{**settings, "lr": 1e-12})
    c = load_file(str(before.out_dir / "model" / "model.safetensors"))
    assert max((a[k].float() - c[k].float()).abs().max().item() for k in a) > 1e-4  # training did move them


def test_early_stopping_waits_for_the_learning_rate_to_settle():
    from types import SimpleNamespace

    import torch

    from graftcv.training.callbacks import PatientWhileWarming

    def run(epochs: list[tuple[float, float]]) -> list[bool]:
        strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision)
        state = SimpleNamespace(fast_dev_run=False, should_stop=False, current_epoch=0, strategy=strategy)
        stopper = PatientWhileWarming("val_loss", patience=3, mode="min")
        stopped = []
        for epoch, (lr, loss) in enumerate(epochs):
            state.current_epoch = epoch
            state.optimizers = [SimpleNamespace(param_groups=[{"lr": lr}, {"lr": lr / 10}])]
            state.callback_metrics = {"val_loss": torch.tensor(loss)}
            stopper._run_early_stopping_check(state)
            stopped.append(state.should_stop)
        return stopped

    warm_up = [(1e-4, 0.50), (2e-4, 0.60), (3e-4, 0.70), (4e-4, 0.80)]  # loss worse while the rate climbs
    high = [(3.5e-4, 0.85), (3e-4, 0.90), (2.5e-4, 0.95)]  # and while it is still above half its peak
    low = [(1.5e-4, 0.96), (1e-4, 0.97), (0.5e-4, 0.98)]
    stopped = run(warm_up + high + low)
    assert not any(stopped[: len(warm_up) + len(high)])  # plain EarlyStopping(patience=3) stops at the peak
    assert stopped[-1]  # three epochs below half the peak without beating the loss where the rate got there
    flat = run([(1e-3, 0.5), (1e-3, 0.6), (1e-3, 0.7), (1e-3, 0.8)])
    assert flat == [False, False, False, True]  # a constant rate counts from the start
