"""Progressive resizing: the per-epoch sizes, their cost in the time plan, and batches trained at those sizes."""

from __future__ import annotations

import pytest
import torch

from graftcv.training.budget import Throughput
from graftcv.training.phase import Phase
from graftcv.training.resizing import epoch_sizes, planned_sizes, relative_cost


def test_sizes_ramp_from_four_sevenths_to_the_full_size() -> None:
    assert epoch_sizes(224, 3) == (128, 176, 224)
    assert epoch_sizes(224, 5) == (128, 160, 176, 192, 224)
    for epochs in range(2, 31):
        sizes = epoch_sizes(224, epochs)
        assert len(sizes) == epochs and sizes[0] == 128 and sizes[-1] == 224
        assert list(sizes) == sorted(sizes) and all(s % 16 == 0 for s in sizes)


def test_one_epoch_or_a_tiny_size_trains_at_the_full_size() -> None:
    assert epoch_sizes(224, 1) == (224,)
    assert epoch_sizes(224, 0) == ()
    assert epoch_sizes(32, 4) == (32, 32, 32, 32)  # 32 px is the floor: nothing to shrink
    assert epoch_sizes(64, 2) == (32, 64)
    assert planned_sizes(False, 224, 3) == (224, 224, 224)


def test_cost_interpolates_the_two_measured_rates_in_pixels() -> None:
    # 40 images/s at 224 px, 100 at 128: per image 25 ms and 10 ms
    assert relative_cost((224, 224), 224, 100.0, 40.0, 128) == pytest.approx(1.0)
    assert relative_cost((128, 224), 224, 100.0, 40.0, 128) == pytest.approx((0.010 + 0.025) / 2 / 0.025)
    middle = ((176**2 - 128**2) / (224**2 - 128**2)) * 0.015 + 0.010
    assert relative_cost((176,), 224, 100.0, 40.0, 128) == pytest.approx(middle / 0.025)
    rates = Throughput(train=40.0, forward=80.0, features=160.0, small_train=(128, 224, 100.0))
    assert rates.over((128, 224)).train == pytest.approx(2 / (0.010 + 0.025))
    assert rates.over((224,)).train == pytest.approx(40.0)
    plain = Throughput(train=40.0, forward=80.0, features=160.0)
    assert plain.over((128, 224)) is plain  # nothing measured at the small size: no guess either


def test_the_module_shrinks_batches_to_the_epoch_size(make_folder, tiny) -> None:
    from graftcv.fitting import prepare, targets
    from graftcv.training.gradient import build_module

    prep = prepare(make_folder(per_class=4), tiny | {"strategy": "full"})
    module = build_module(prep.backbone.model, prep.config, targets(prep, "train"), len(prep.splits.classes))
    module.start_phase(Phase("full", 2, 1e-3, sizes=(32, 64)))
    x = torch.rand(2, 3, 64, 64)
    assert module.train_input(x).shape[-2:] == (32, 32)  # epoch 0 (no trainer attached)
    module.start_phase(Phase("full", 2, 1e-3))
    assert module.train_input(x) is x
    module.start_phase(Phase("head", 2, 1e-3, on_features=True, sizes=(32, 64)))
    features = torch.rand(2, 8)
    assert module.train_input(features) is features


@pytest.mark.parametrize("progressive", [True, False])
def test_each_epoch_trains_at_its_recorded_size(tmp_path, make_folder, tiny, progressive: bool) -> None:
    import graftcv

    settings = tiny | {"strategy": "full", "epochs": 2, "size": 64, "patience": 5, "progressive_resize": progressive}
    run = graftcv.fit(make_folder(per_class=4), out=tmp_path / "run", **settings)
    assert [int(row["train_px"]) for row in run.history] == ([32, 64] if progressive else [64, 64])
    assert run.config["progressive_resize"] is progressive
    assert "train_px" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
