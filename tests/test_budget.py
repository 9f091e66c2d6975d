"""Time planning: the budget planner's arithmetic, the run estimate, the ETA, and the levers that speed up steps."""

from __future__ import annotations

import logging

import pytest
import timm

from graftcv.backbones import early_groups, layer_groups
from graftcv.config import TrainConfig
from graftcv.errors import GraftcvError
from graftcv.training.budget import (
    MIN_EPOCH_FRACTION,
    SAVE_SECONDS,
    EpochPlan,
    RunClock,
    Throughput,
    Workload,
    deadline_for,
    epoch_seconds,
    estimate,
    format_seconds,
    plan_epochs,
    process_age,
)

RATES = Throughput(train=40.0, forward=80.0, features=160.0)  # 800 train + 80 val: 20 s + 1 s per epoch


def test_whole_epochs_when_the_budget_covers_the_cap() -> None:
    assert plan_epochs(1000.0, 800, 80, RATES, max_epochs=5) == EpochPlan(5, 1.0)
    assert plan_epochs(105.0, 800, 80, RATES, max_epochs=5) == EpochPlan(5, 1.0)


def test_one_more_epoch_on_a_share_of_the_images_fills_the_budget() -> None:
    plan = plan_epochs(50.0, 800, 80, RATES, max_epochs=5)  # 2.38 whole epochs fit
    assert plan.epochs == 3
    assert plan.fraction == pytest.approx((50.0 / 3 - 1.0) * 40.0 / 800, abs=1e-4)
    used = plan.epochs * epoch_seconds(800, 80, RATES, plan.fraction)
    assert used == pytest.approx(50.0, rel=1e-3)  # ends at the deadline, not up to an epoch early


def test_less_than_an_epoch_gives_one_partial_epoch_or_none() -> None:
    plan = plan_epochs(11.0, 800, 80, RATES, max_epochs=5)
    assert plan == EpochPlan(1, 0.5)
    assert plan_epochs(2.0, 800, 80, RATES, max_epochs=5).skipped  # under a tenth of an epoch
    assert plan_epochs(-30.0, 800, 80, RATES, max_epochs=5).skipped


def test_validation_heavy_epochs_fall_back_to_whole_epochs_that_fit() -> None:
    rates = Throughput(train=1000.0, forward=10.0, features=10.0)  # 0.8 s of training, 8 s of validation
    plan = plan_epochs(20.0, 800, 80, rates, max_epochs=5)
    assert plan.epochs * epoch_seconds(800, 80, rates, plan.fraction) <= 20.0 + 1e-6
    assert plan.fraction >= MIN_EPOCH_FRACTION


def test_estimate_adds_the_stages() -> None:
    work = Workload(n_train=800, n_val=80, n_test=160, feature_images=880, image_epochs=5)
    guess = estimate(work, RATES)
    assert guess.features == pytest.approx(880 / 160)
    assert guess.epoch == pytest.approx(21.0)
    assert guess.test == pytest.approx(2.0)
    assert guess.total == pytest.approx(5.5 + 105.0 + 2.0 + SAVE_SECONDS)
    cached = estimate(Workload(800, 80, 160, feature_images=0, image_epochs=0, test_on_features=True), RATES)
    assert cached.total == pytest.approx(SAVE_SECONDS)


def test_eta_counts_epochs_left_and_what_follows() -> None:
    clock = RunClock(after_training=10.0, epoch=20.0, epochs_left=3)
    assert clock.eta() == pytest.approx(70.0)
    assert clock.eta(0.5) == pytest.approx(60.0)
    clock.epochs_left = 0
    assert clock.eta() == pytest.approx(10.0)


def test_deadline_leaves_room_for_the_stages_after_training() -> None:
    assert 0.0 < process_age() < 24 * 3600
    assert deadline_for(300.0, after_training=20.0, origin=1000.0) == pytest.approx(1280.0)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


@pytest.mark.parametrize(
    ("name", "expected", "first_trained"),
    [
        ("tf_efficientnet_lite0", 3, "blocks.2."),
        ("resnet10t", 2, "layer2."),
        ("convnext_atto", 2, "stages.1."),
        ("vit_tiny_patch16_224", 1, "blocks.0."),  # one resolution throughout: only the patch embedding
    ],
)
def test_early_groups_are_the_stem_and_stride_4_stages(name: str, expected: int, first_trained: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=3)
    groups = layer_groups(model)
    assert early_groups(model, groups) == expected
    assert all(n.startswith(first_trained) for n in groups[expected])


def test_training_size_defaults_to_the_evaluation_size() -> None:
    assert TrainConfig().training_size(224) == 224
    assert TrainConfig(train_size=176).training_size(224) == 176
    with pytest.raises(GraftcvError, match="--train-size"):
        TrainConfig(train_size=8).validate()
    with pytest.raises(GraftcvError, match="--budget must look like"):
        TrainConfig(budget="soon").validate()


def test_training_images_come_at_the_training_size(make_folder, tiny) -> None:
    from graftcv.fitting import prepare
    from graftcv.training.gradient import make_loaders

    prep = prepare(make_folder(per_class=4), tiny | {"strategy": "full", "size": 48, "train_size": 32})
    train, val = make_loaders(prep.phases[-1], prep.splits, prep.config, prep.backbone.data_config, None)
    assert next(iter(train))[0].shape[-2:] == (32, 32)
    assert next(iter(val))[0].shape[-2:] == (48, 48)  # validation (and the saved model) keep --size


def test_frozen_stem_gets_no_gradient_and_scratch_trains_everything(tmp_path, make_folder, tiny) -> None:
    import numpy as np

    from graftcv.fitting import prepare, targets
    from graftcv.training.gradient import build_module

    data = make_folder(per_class=4)
    prep = prepare(data, tiny)
    module = build_module(prep.backbone.model, prep.config, targets(prep, "train"), len(prep.splits.classes))
    assert module.frozen_bottom == 0  # random init: nothing is worth keeping frozen
    pretend = prep.config
    pretend.pretrained = True
    module = build_module(prep.backbone.model, pretend, np.array(targets(prep, "train")), len(prep.splits.classes))
    module.start_phase(prep.phases[-1])
    frozen = {n for g in module.groups[: module.frozen_bottom] for n in g}
    assert module.frozen_bottom == 2 and frozen
    assert all(not p.requires_grad for n, p in module.model.named_parameters() if n in frozen)
    assert all(p.requires_grad for n, p in module.model.named_parameters() if n not in frozen)
    with pytest.raises(GraftcvError, match="scratch strategy runs with"):
        prepare(data, tiny | {"strategy": "scratch", "freeze_stem": True})


def test_budget_plans_the_epochs_and_records_the_estimate(tmp_path, make_folder, tiny, caplog) -> None:
    import graftcv

    data = make_folder(per_class=8)
    settings = tiny | {"epochs": 2, "strategy": "full", "budget": "10m"}
    with caplog.at_level(logging.INFO, logger="graftcv"):
        run = graftcv.fit(data, out=tmp_path / "run", **settings)
    assert "Estimated run: 10m00s (--budget)" in caplog.text
    assert "Budget: 2 full epoch(s)" in caplog.text  # the --epochs given are the cap, and 10 minutes cover them
    assert run.summary["budget"] == "10m" and run.summary["estimated_seconds"] > 0
    assert run.summary["probe_images_per_second"]["train"] > 0
    assert run.config["budget"] == "10m"


def test_a_budget_too_short_for_the_feature_pass_is_one_sentence(tmp_path, make_folder, tiny) -> None:
    import graftcv

    with pytest.raises(GraftcvError, match="--budget 1s is too short"):
        graftcv.fit(
            make_folder(per_class=8), out=tmp_path / "run", **tiny | {"strategy": "linear-probe", "budget": "1s"}
        )


def test_the_probe_leaves_the_run_s_random_draws_alone(tmp_path, make_folder, tiny) -> None:
    """Same seed, same numbers, whether the run measured its throughput first (CLI, --budget) or not."""
    import numpy as np

    import graftcv

    data = make_folder(per_class=6)
    quiet = graftcv.fit(data, out=tmp_path / "quiet", **tiny | {"strategy": "full"})
    probed = graftcv.fit(data, out=tmp_path / "probed", **tiny | {"strategy": "full", "budget": "10m"})
    assert "probe_images_per_second" in probed.summary and "probe_images_per_second" not in quiet.summary
    assert [row["train_loss"] for row in probed.history] == [row["train_loss"] for row in quiet.history]
    assert np.array_equal(
        np.loadtxt(tmp_path / "quiet" / "val_predictions.csv", delimiter=",", skiprows=1, usecols=3),
        np.loadtxt(tmp_path / "probed" / "val_predictions.csv", delimiter=",", skiprows=1, usecols=3),
    )


def test_members_fitted_in_one_process_count_their_budget_from_their_own_fit(monkeypatch):
    from graftcv.training import budget

    monkeypatch.setattr(budget, "_count_from_process_start", True)  # what the CLI sets
    monkeypatch.setattr(budget, "process_age", lambda: 500.0)  # a process already 500 s old
    fit_started = budget.time.perf_counter()
    assert budget.run_origin(fit_started) < fit_started - 400  # the CLI's first fit counts its start-up
    with budget.budgets_count_from_fit():
        assert budget.run_origin(fit_started) == fit_started  # a later member's budget is not already spent
    assert budget.run_origin(fit_started) < fit_started - 400
