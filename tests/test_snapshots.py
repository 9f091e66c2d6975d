"""Snapshot ensembles and greedy soups of one training run (--snapshots), and bagging (--bagging)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

import graftcv
from graftcv import GraftcvError
from graftcv.bagging import bootstrap
from graftcv.data import ImageSet


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory):
    from conftest import TINY, write_class_folders

    base = tmp_path_factory.mktemp("snapshots")
    data = write_class_folders(base / "data", classes=3, per_class=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        run = graftcv.fit(data, out=base / "run", **(TINY | {"epochs": 2, "snapshots": 3, "patience": 1}))
    return run, data


def test_snapshots_run_every_cycle_to_its_end_and_ensemble_their_ends(snapshot_run):
    run, _ = snapshot_run
    phases = [row["phase"] for row in run.history]
    # patience 1 would stop a cycle early: cycles run whole, so the snapshots sit at the low-rate end of each
    assert phases.count("finetune") == phases.count("cycle2") == phases.count("cycle3") == 2
    rows = run.summary["snapshots"]
    assert rows["ensemble"]["epochs"] == [3, 5, 7]  # after the head epoch, the last epoch of each 2-epoch cycle
    meta = json.loads((run.out_dir / "snapshots" / "ensemble" / "model" / "graftcv.json").read_text())
    assert meta["kind"] == "ensemble" and meta["weights"] == pytest.approx([1 / 3] * 3) and len(meta["members"]) == 3
    tensors = load_file(run.out_dir / "snapshots" / "ensemble" / "model" / "model.safetensors")
    name = next(k.removeprefix("member0.") for k in tensors if k.startswith("member0.") and k.endswith("fc.weight"))
    assert not np.allclose(tensors[f"member0.{name}"].numpy(), tensors[f"member2.{name}"].numpy())  # three networks
    assert rows["best_epoch"]["epoch"] == run.summary["best_epoch"]
    for variant in ("ensemble", "soup"):  # each a run directory of its own, evaluated by its saved artifact
        summary = json.loads((run.out_dir / "snapshots" / variant / "summary.json").read_text())
        assert summary["val_accuracy"] == rows[variant]["val_accuracy"]
        assert (run.out_dir / "snapshots" / variant / "val_predictions.csv").is_file()


def test_snapshot_soup_averages_best_epochs_and_loads_as_one_network(snapshot_run):
    run, data = snapshot_run
    soup = run.summary["snapshots"]["soup"]
    assert set(soup["epochs"]) <= set(soup["candidates"]) and soup["epochs"]
    assert len(soup["candidates"]) <= 5  # SOUP_INGREDIENTS, chosen by validation loss among the cycles' epochs
    model = graftcv.load(run.out_dir / "snapshots" / "soup" / "model")
    assert model.meta["kind"] == "classifier" and model.meta["weighting"] == "soup"
    probs, _ = model.predict_proba([str(p) for p in sorted(data.rglob("*.jpg"))[:3]])
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    from graftcv.report import build_report

    page = build_report(run.out_dir).read_text()
    assert "Snapshots: the best epoch" in page and "snapshots/soup/" in page


def test_snapshots_refuse_what_they_cannot_cycle(tiny, make_folder, tmp_path):
    data = make_folder()
    with pytest.raises(GraftcvError, match="--snapshots cycles a phase trained on images"):
        graftcv.fit(data, out=tmp_path / "probe", **(tiny | {"strategy": "linear-probe", "snapshots": 2}))
    with pytest.raises(GraftcvError, match="at least 2 cycles"):
        graftcv.fit(data, out=tmp_path / "one", **(tiny | {"snapshots": 1}))


def test_bootstrap_keeps_each_class_count_and_repeats_images():
    images = ImageSet([f"{c}{i}.jpg" for c in "ab" for i in range(10)], ["a"] * 10 + ["b"] * 10)
    sample = bootstrap(images, seed=3)
    assert sample.counts() == {"a": 10, "b": 10}
    assert len(set(sample.paths)) < len(sample.paths)  # with replacement
    assert all(p.startswith(label) for p, label in zip(sample.paths, sample.labels, strict=True))
    assert bootstrap(images, seed=3).paths == sample.paths and bootstrap(images, seed=4).paths != sample.paths


def test_bagging_trains_members_on_bootstrap_samples_into_one_ensemble(tiny, make_folder, tmp_path):
    data = make_folder()
    run = graftcv.bag(data, 2, tmp_path / "bag", **tiny)
    meta = json.loads((tmp_path / "bag" / "model" / "graftcv.json").read_text())
    assert meta["kind"] == "ensemble" and meta["weights"] == [0.5, 0.5]
    configs = [json.loads((tmp_path / "bag" / "members" / str(i) / "config.json").read_text()) for i in range(2)]
    assert [c["seed"] for c in configs] == [0, 1]
    summaries = [json.loads((tmp_path / "bag" / "members" / str(i) / "summary.json").read_text()) for i in range(2)]
    assert summaries[0]["train_counts"] == summaries[1]["train_counts"]  # drawn within each class
    assert run.summary["bagging"] == 2 and run.summary["n_val"] == summaries[0]["n_val"]  # one shared validation
    with pytest.raises(GraftcvError, match="at least 2 members"):
        graftcv.bag(data, 1, tmp_path / "one", **tiny)


def test_cli_train_bagging_prints_the_ensemble(make_folder, tmp_path, monkeypatch, capsys, restore_logging):
    import sys

    import graftcv.cli

    def main_exit(argv: list[str]) -> int:
        monkeypatch.setattr(sys, "argv", argv)
        try:
            graftcv.cli.main()
        except SystemExit as done:
            return done.code or 0
        return 0

    data, out = make_folder(), tmp_path / "bag"
    tiny = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--epochs", "1", "--head-epochs", "1",
            "--batch-size", "8", "--workers", "0"]  # fmt: skip
    assert main_exit(["graftcv", "train", str(data), "--bagging", "2", "--out", str(out), *tiny]) == 0
    assert "ensemble (equal weights)" in capsys.readouterr().out and (out / "members" / "1" / "model").is_dir()
    assert main_exit(["graftcv", "train", str(data), "--bagging", "2", "--preset", "fast", "--out", str(out)]) == 2
    assert "drop --preset" in capsys.readouterr().err
