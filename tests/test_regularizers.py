"""--reg: L2-SP and BSS penalties, their parsing, and what they do to a fine-tuning run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import timm
import torch
from conftest import TINY, write_class_folders
from safetensors.torch import load_file, save_file

import graftcv
from graftcv.errors import GraftcvError
from graftcv.training.penalties import SpectralShrinkage, StartingPointPenalty
from graftcv.training.regularizers import REGULARIZERS, parse_regularizers


def test_specs_parse_into_weights() -> None:
    assert parse_regularizers("none") == {} and parse_regularizers("") == {}
    assert parse_regularizers("l2sp") == {"l2sp": REGULARIZERS["l2sp"].weight}
    assert parse_regularizers("l2sp:0.5, bss") == {"l2sp": 0.5, "bss": REGULARIZERS["bss"].weight}
    for bad in ("dropout", "l2sp:much", "bss:-1"):
        with pytest.raises(GraftcvError):
            parse_regularizers(bad)


def test_starting_point_penalty_measures_the_distance_from_the_start() -> None:
    model = timm.create_model("resnet10t", num_classes=3)
    penalty = StartingPointPenalty(model, weight=2.0)
    assert penalty(model).item() == 0.0
    with torch.no_grad():
        model.conv1[0].weight.add_(0.1)  # a backbone weight moves
        model.fc.weight.add_(5.0)  # the classifier is new: it is not held to its start
    expected = 0.5 * 2.0 * (0.1**2) * model.conv1[0].weight.numel()
    assert penalty(model).item() == pytest.approx(expected, rel=1e-4)
    model.conv1[0].weight.requires_grad_(False)  # frozen parameters are skipped
    assert penalty(model).item() == pytest.approx(0.0, abs=1e-6)


def test_spectral_shrinkage_penalizes_the_smallest_singular_values() -> None:
    features = torch.diag(torch.tensor([5.0, 3.0, 0.5]))
    assert SpectralShrinkage(None, 0.1)(None, features).item() == pytest.approx(0.1 * 0.25)
    assert SpectralShrinkage(None, 1.0, k=2)(None, features).item() == pytest.approx(9.25)


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Class folders, and a weights file standing in for pretrained weights (L2-SP needs a starting point)."""
    base = tmp_path_factory.mktemp("reg")
    torch.manual_seed(0)
    weights = base / "start.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), weights)
    return write_class_folders(base / "data", classes=2, per_class=8, size=32), weights


def _distance_from_start(run_dir: Path, weights: Path) -> float:
    start, trained = load_file(weights), load_file(run_dir / "model" / "model.safetensors")
    shared = [k for k in start if f"model.{k}" in trained and start[k].is_floating_point() and "running" not in k]
    assert len(shared) > 10
    return sum(float((trained[f"model.{k}"] - start[k]).pow(2).sum()) for k in shared)


def test_l2sp_keeps_the_network_nearer_its_pretrained_weights(start: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = start
    settings = TINY | {"weights": str(weights), "pretrained": False, "epochs": 3, "lr": 3e-2, "cache": False}
    distances = {}
    for reg in ("none", "l2sp:1000"):
        run = graftcv.fit(data, out=tmp_path / reg.replace(":", "-"), reg=reg, **settings)
        distances[reg] = _distance_from_start(run.out_dir, weights)
    assert distances["l2sp:1000"] < 0.5 * distances["none"]


def test_bss_penalty_is_logged_on_fine_tuning_epochs_only(start: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = start
    graftcv.fit(data, out=tmp_path / "run", reg="bss", **(TINY | {"epochs": 2}))
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["reg_loss"] for r in rows if r["phase"] == "head"] == [""]
    fine_tuning = [float(r["reg_loss"]) for r in rows if r["phase"] == "finetune"]
    assert len(fine_tuning) == 2 and all(v >= 0 for v in fine_tuning)
    assert (tmp_path / "run" / "config.json").read_text().count('"reg": "bss"') == 1


def test_reg_is_refused_where_it_cannot_apply(start: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = start
    with pytest.raises(GraftcvError, match="closed form"):
        graftcv.fit(data, out=tmp_path / "a", strategy="linear-probe", reg="bss", **TINY)
    with pytest.raises(GraftcvError, match="random weights"):
        graftcv.fit(data, out=tmp_path / "b", reg="l2sp", **TINY)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
