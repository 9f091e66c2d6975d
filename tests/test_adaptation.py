"""graftcv adapt: the alignment losses, the gradient-reversal layer, target labels kept out of training."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, write_class_folders
from safetensors.torch import load_file

import graftcv
import graftcv.cli
from graftcv.self_training import select
from graftcv.training.alignment import ALIGNMENTS, ramp, reverse_gradient

SETTINGS = TINY | {"epochs": 2}


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    features = torch.randn(4, 3, requires_grad=True)
    (reverse_gradient(features, 0.5) * torch.arange(3.0)).sum().backward()
    assert torch.equal(reverse_gradient(features, 0.5), features)
    assert torch.allclose(features.grad, -0.5 * torch.arange(3.0).expand(4, 3))


def test_ramp_goes_from_zero_to_one() -> None:
    values = [ramp(p / 10) for p in range(11)]
    assert values[0] == 0.0 and values[-1] > 0.99 and values == sorted(values)


@pytest.mark.parametrize("name", ["mmd", "coral"])
def test_discrepancies_grow_with_the_shift(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(64, 8, generator=generator)
    near = torch.randn(64, 8, generator=generator)
    far = torch.randn(64, 8, generator=generator) * 3 + 2
    loss = ALIGNMENTS.lookup(name).build(8)
    assert loss(source, far, 1.0)[0] > loss(source, near, 1.0)[0] >= 0


def test_discriminator_learns_to_tell_domains_apart() -> None:
    torch.manual_seed(0)
    loss = ALIGNMENTS.lookup("dann").build(4)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    source, target = torch.randn(64, 4), torch.randn(64, 4) + 3
    for _ in range(50):
        optimizer.zero_grad()
        value, _ = loss(source, target, 0.0)
        value.backward()
        optimizer.step()
    assert loss.eval()(source, target, 0.0)[1]["domain_acc"] > 0.95


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("domains")
    source = write_class_folders(base / "source", classes=2, per_class=6, size=32)
    target = write_class_folders(base / "target", classes=2, per_class=5, size=32, seed=7)
    wrong = base / "wrong"  # the same target images, every label swapped
    for folder in target.iterdir():
        swapped = wrong / ("class_1" if folder.name == "class_0" else "class_0")
        shutil.copytree(folder, swapped)
    return {"source": source, "target": target, "wrong": wrong, "base": base}


@pytest.mark.parametrize("method", ["dann", "mmd", "coral", "source-only"])
def test_adapt_runs_each_method_and_measures_the_shift(domains: dict, tmp_path: Path, method: str) -> None:
    adapted = graftcv.adapt(domains["source"], domains["target"], out=tmp_path / "run", method=method,
                            target_labels=domains["target"], **SETTINGS)  # fmt: skip
    summary = json.loads((tmp_path / "run" / "adaptation.json").read_text())
    assert summary["method"] == method and summary["target_images"] == 10
    assert 0.0 <= summary["domain_shift"]["after"]["proxy_a_distance"] <= 2.0
    assert adapted.target_report["accuracy"] == summary["target_accuracy"]
    assert (tmp_path / "run" / "domain_features.png").stat().st_size > 1000
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["phase"] != "head"]
    logged = {"dann": "domain_acc", "mmd": "discrepancy", "coral": "discrepancy", "source-only": None}[method]
    if logged is None:
        assert all(row["align_loss"] == "" for row in rows)
    else:
        assert rows and all(row[logged] != "" for row in rows)
    assert adapted.run.summary["best_epoch"] in {int(row["epoch"]) for row in rows}  # a fine-tuning epoch


def test_adaptation_under_a_budget_probes_source_and_target_steps(domains: dict, tmp_path: Path) -> None:
    """--budget measures training steps before the run: with a target stream they see both domains."""
    adapted = graftcv.adapt(domains["source"], domains["target"], out=tmp_path / "run", method="coral",
                            **(SETTINGS | {"epochs": None, "budget": "20s"}))  # fmt: skip
    assert adapted.run.summary["val_accuracy"] is not None


def test_target_labels_never_reach_training(domains: dict, tmp_path: Path) -> None:
    """The same run with right and with swapped target labels: identical weights, different target scores."""
    runs = {}
    for name in ("target", "wrong"):
        runs[name] = graftcv.adapt(domains["source"], domains["target"], out=tmp_path / name, method="dann",
                                   target_labels=domains[name], cache=False, **SETTINGS)  # fmt: skip
    weights = [load_file(tmp_path / name / "model" / "model.safetensors") for name in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    right, wrong = (runs[n].target_report["accuracy"] for n in ("target", "wrong"))
    assert right + wrong == pytest.approx(1.0)  # two classes, every label swapped


def test_pseudo_labels_are_confident_and_class_balanced() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.85, 0.15], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    assert select(probs, 1, 1) == {0: 0, 1: 0, 2: 0, 4: 1}  # 0.6 and 0.7 are below the threshold
    assert select(probs, 1, 3) == {0: 0, 4: 1}  # a third of an even share per class: the surest of each


def test_self_training_records_its_rounds(domains: dict, tmp_path: Path) -> None:
    adapted = graftcv.adapt(domains["source"], domains["target"], out=tmp_path / "run", method="self-training",
                            target_labels=domains["target"], **SETTINGS)  # fmt: skip
    rounds = json.loads((tmp_path / "run" / "adaptation.json").read_text())["self_training"]
    assert rounds and rounds[0]["round"] == 1
    assert all(0 <= r["correct"] <= r["pseudo_labelled"] <= 10 for r in rounds)
    assert adapted.run.model is not None and (tmp_path / "run" / "model").is_dir()


def _main(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["graftcv", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    captured = capsys.readouterr()
    return done.value.code, " ".join((captured.out + captured.err).split())


def test_bad_adaptation_input_is_one_sentence(domains: dict, tmp_path: Path, monkeypatch, capsys, restore_logging):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = _main(monkeypatch, capsys, ["adapt", domains["source"], "--target", empty, "--out", tmp_path / "a"])
    assert code == 2 and "No readable images found" in output and "Traceback" not in output
    args = ["adapt", domains["source"], "--target", domains["target"], "--method", "magic", "--out", tmp_path / "b"]
    code, output = _main(monkeypatch, capsys, args)
    assert code == 2 and "Unknown adaptation method 'magic'" in output
