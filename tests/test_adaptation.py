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
from torch import nn

import graftcv
import graftcv.cli
from graftcv.compare.adaptation import compare_adaptation
from graftcv.self_training import select
from graftcv.training.aligners import reverse_gradient
from graftcv.training.alignment import ALIGNMENTS, ramp

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
    args = ["adapt", domains["source"], "--target", domains["target"], "--methods", "dann,mmd", "--out", tmp_path / "c"]
    code, output = _main(monkeypatch, capsys, args)
    assert code == 2 and "give --target-labels" in output
    code, output = _main(monkeypatch, capsys, [*args, "--target-labels", domains["target"], "--methods", "dann,magic"])
    assert code == 2 and "--methods takes" in output and not (tmp_path / "c").exists()


def _toy_domains(n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Source: class in feature 0 (noisy) and, cleaner, in feature 1; target: feature 1 carries no class and sits
    elsewhere. A source-only network leans on feature 1 and fails on the target; aligning the domains' features
    leaves it feature 0, which holds in both."""
    labels = [torch.randint(0, 2, (n,), generator=generator) for _ in range(2)]
    domains = []
    for y, target in zip(labels, (False, True), strict=True):
        sign, x = y.float() * 2 - 1, torch.randn(n, 6, generator=generator)
        x[:, 0] = sign + 0.7 * x[:, 0]
        x[:, 1] = (2.0 if target else sign) + 0.3 * x[:, 1]
        domains += [x, y]
    return tuple(domains)


def _target_accuracy(method: str | None, steps: int = 150) -> float:
    xs, ys, xt, yt = _toy_domains(128, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder, classifier = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8)), nn.Linear(8, 2)
    alignment = ALIGNMENTS.lookup(method).build(8) if method else None
    modules = [encoder, classifier, *([alignment] if alignment is not None else [])]
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=1e-2)
    for step in range(steps):
        optimizer.zero_grad()
        source, target = encoder(xs), encoder(xt)
        loss = nn.functional.cross_entropy(classifier(source), ys)
        if alignment is not None:
            loss = loss + alignment(source, target, step / steps)[0]
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((classifier(encoder(xt)).argmax(1) == yt).float().mean())


def test_alignment_measurably_helps_on_shifted_toy_domains() -> None:
    """The registered alignments, as TransferModule applies them (loss plus ramped alignment), on domains where
    the answer is known: every one lifts target accuracy well above source-only's chance level."""
    baseline = _target_accuracy(None)
    assert baseline < 0.6
    for method in ("dann", "mmd", "coral"):
        assert _target_accuracy(method) > baseline + 0.08, method


class SpyAdapt:
    """Writes what a finished `adapt` run leaves; target accuracy by method and seed from `scores`."""

    def __init__(self, scores: dict[str, list[float]]) -> None:
        self.scores, self.calls = scores, []

    def __call__(self, source, target, out, method, target_labels, seed, **settings):
        self.calls.append((method, seed, settings))
        out.mkdir(parents=True)
        accuracy = self.scores[method][seed]
        shift = {"before": {"proxy_a_distance": 1.5}, "after": {"proxy_a_distance": 1.0}}
        (out / "adaptation.json").write_text(json.dumps({"method": method, "target_accuracy": accuracy,
            "target_macro_f1": accuracy - 0.01, "domain_shift": shift, "seconds": 10.0}))  # fmt: skip
        (out / "summary.json").write_text(json.dumps({"val_accuracy": 0.9}))


def test_methods_compared_over_seeds_in_numbers_and_words(tmp_path: Path) -> None:
    scores = {"source-only": [0.50, 0.52, 0.51], "mmd": [0.60, 0.63, 0.61], "dann": [0.40, 0.41, 0.43],
              "coral": [0.52, 0.50, 0.53]}  # fmt: skip
    spy = SpyAdapt(scores)
    found = compare_adaptation("src", "tgt", "labels", "mmd,dann,coral", "0,1,2", tmp_path / "c", adapt=spy, epochs=1)
    assert [c[:2] for c in spy.calls[:4]] == [("source-only", 0), ("mmd", 0), ("dann", 0), ("coral", 0)]
    assert all(c[2] == {"epochs": 1, "overwrite": True} for c in spy.calls) and len(spy.calls) == 12
    kinds = {v["method"]: v["kind"] for v in found.verdicts}
    assert kinds == {"mmd": "better", "dann": "negative-transfer", "coral": "no-clear-difference"}
    words = (tmp_path / "c" / "adaptation-compare.md").read_text()
    assert "Negative transfer: dann is worse than source-only by 9.7 points" in words
    mmd = next(e for e in found.table if e["method"] == "mmd")
    assert mmd["n"] == 3 and mmd["target_accuracy_ci_low"] < 0.6133 < mmd["target_accuracy_ci_high"]
    again = compare_adaptation("src", "tgt", "labels", "mmd,dann,coral", "0,1,2", tmp_path / "c", adapt=None)
    assert again.verdicts == found.verdicts  # finished runs are read back, none rerun


@pytest.mark.parametrize("target_images", [3, 25])
def test_an_adapted_epoch_is_one_pass_over_the_source(tmp_path: Path, target_images: int) -> None:
    """Whether the target set is smaller or larger, an epoch has the source's batches (the same optimizer steps
    as source-only), each with as many target images."""
    from torch.utils.data import TensorDataset

    from graftcv.config import TrainConfig
    from graftcv.data import build_transform, make_loader
    from graftcv.training.target_stream import with_target

    target = write_class_folders(tmp_path / "target", classes=1, per_class=target_images, size=32)
    source = make_loader(TensorDataset(torch.zeros(10, 3, 32, 32), torch.zeros(10, dtype=torch.long)), 4,
                         shuffle=True, num_workers=0)  # fmt: skip
    data_config = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0,
                   "interpolation": "bilinear"}  # fmt: skip
    config = TrainConfig(target=str(target), adaptation="coral", num_workers=0)
    combined = with_target(source, config, build_transform(data_config), 32, 4)
    batches = [(len(b["source"][0]), len(b["target"][0])) for b, *_ in combined]
    assert batches == [(4, 4), (4, 4), (2, 2)]


def test_cli_compares_methods_over_seeds(domains: dict, tmp_path: Path, monkeypatch, capsys, restore_logging) -> None:
    args = ["adapt", domains["source"], "--target", domains["target"], "--target-labels", domains["target"],
            "--methods", "coral", "--seeds", "0,1", "--model", "resnet10t", "--no-pretrained", "--size", "32",
            "--epochs", "1", "--head-epochs", "1", "--batch-size", "8", "--workers", "0",
            "--out", tmp_path / "c"]  # fmt: skip
    code, output = _main(monkeypatch, capsys, args)
    assert code in (0, None), output
    assert "| source-only | 2 |" in output and "| coral | 2 |" in output
    assert sorted(p.name for p in (tmp_path / "c" / "runs").iterdir()) == ["seed-0", "seed-1"]
    saved = json.loads((tmp_path / "c" / "adaptation-compare.json").read_text())
    assert saved["methods"] == ["source-only", "coral"] and len(saved["runs"]) == 4
    assert saved["verdicts"][0]["method"] == "coral" and saved["verdicts"][0]["n"] == 2
