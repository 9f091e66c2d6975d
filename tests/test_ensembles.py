"""Ensembles in one artifact (no pickle, the weighted mean of their members) and test-time augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import graftcv
from graftcv import GraftcvError
from graftcv.ensembles import select_weights
from graftcv.tta import TTA_MODES


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two models of one split: a fine-tuned network and a linear probe on another input size."""
    from conftest import TINY, write_class_folders

    base = tmp_path_factory.mktemp("ensembles")
    data = write_class_folders(base / "data", classes=3, per_class=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        tuned = graftcv.fit(data, out=base / "tuned", strategy="head", **TINY)
        probe = graftcv.fit(data, out=base / "probe", strategy="linear-probe", **(TINY | {"size": 40}))
    return {"base": base, "data": data, "runs": [tuned, probe], "images": sorted(data.rglob("*.jpg"))[::4]}


def test_ensemble_is_one_pickle_free_artifact_of_weighted_members(members):
    base, (tuned, probe) = members["base"], members["runs"]
    run = graftcv.ensemble([tuned.out_dir, probe.out_dir / "model"], base / "equal", weights="equal")
    files = sorted(p.name for p in (base / "equal" / "model").iterdir())
    assert files == ["README.md", "graftcv.json", "model.safetensors"]  # the model card, the metadata, the weights
    meta = json.loads((base / "equal" / "model" / "graftcv.json").read_text())
    assert meta["kind"] == "ensemble" and meta["weights"] == [0.5, 0.5] and len(meta["members"]) == 2
    assert meta["data_config"]["input_size"][-1] == 40  # the larger member's input; the other is resized
    loaded = graftcv.load(run.out_dir / "model")
    images = [str(p) for p in members["images"]]
    ensemble_probs, _ = loaded.predict_proba(images)
    assert ensemble_probs.shape == (len(images), 3)
    np.testing.assert_allclose(ensemble_probs.sum(1), 1.0, atol=1e-5)
    # the 40 px member sees exactly its own preprocessing: its share of the mean is its own prediction
    probe_probs, _ = graftcv.load(probe.out_dir / "model").predict_proba(images)
    tuned_share = 2 * ensemble_probs - probe_probs
    assert np.all(tuned_share > -1e-5)
    np.testing.assert_allclose(tuned_share.sum(1), 1.0, atol=1e-4)
    # saved again elsewhere and reloaded: the same predictions
    loaded.save(base / "copy")
    again, _ = graftcv.load(base / "copy").predict_proba(images)
    np.testing.assert_allclose(again, ensemble_probs, atol=1e-6)
    assert run.summary["members"][1]["weight"] == 0.5 and "val_accuracy" in run.summary
    from graftcv.report import build_report

    assert "Ensemble of 2 models (equal weights)" in build_report(run.out_dir, cams=False).read_text()


def test_learned_weights_prefer_the_better_member():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.1)
    good[np.arange(200), targets] = 0.8
    bad = rng.dirichlet(np.ones(3), 200)
    weights = select_weights([bad, good], targets)
    assert weights[1] > 0.8 and abs(sum(weights) - 1) < 1e-9


def test_ensemble_refuses_mismatched_members(members, tmp_path):
    from conftest import TINY, write_class_folders

    other_data = write_class_folders(tmp_path / "other", classes=2, per_class=6)
    other = graftcv.fit(other_data, out=tmp_path / "other-run", strategy="linear-probe", **TINY)
    with pytest.raises(GraftcvError, match="other classes"):
        graftcv.ensemble([members["runs"][0].out_dir, other.out_dir], tmp_path / "bad")
    with pytest.raises(GraftcvError, match="at least two"):
        graftcv.ensemble([members["runs"][0].out_dir], tmp_path / "bad")


@pytest.mark.parametrize("mode", ["flip", "flip-crops"])
def test_tta_shape_and_flip_symmetric_image(members, mode, tmp_path):
    model_dir = members["runs"][0].out_dir / "model"
    plain, augmented = graftcv.load(model_dir), graftcv.load(model_dir, tta=mode)
    images = [str(p) for p in members["images"]]
    probs, _ = augmented.predict_proba(images)
    assert probs.shape == (len(images), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert not np.allclose(probs, plain.predict_proba(images)[0], atol=1e-7)  # the views do change something
    left = np.random.default_rng(1).integers(0, 255, (48, 24, 3), dtype=np.uint8)
    symmetric = Image.fromarray(np.concatenate([left, left[:, ::-1]], axis=1))
    if mode == "flip":  # the mirrored view of a mirror-symmetric image is the image itself
        np.testing.assert_allclose(
            augmented.predict_proba([symmetric])[0], plain.predict_proba([symmetric])[0], atol=1e-5
        )
    assert TTA_MODES[mode] == (2 if mode == "flip" else 10)


def test_unknown_tta_is_one_sentence(members):
    with pytest.raises(GraftcvError, match="Unknown --tta"):
        graftcv.load(members["runs"][0].out_dir / "model", tta="rotate")


def test_cli_ensemble_and_tta(members, monkeypatch, capsys, restore_logging):
    import sys

    import graftcv.cli

    def main_exit(argv: list[str]) -> int:
        monkeypatch.setattr(sys, "argv", argv)
        try:
            graftcv.cli.main()
        except SystemExit as done:
            return done.code or 0
        return 0

    tuned, probe = members["runs"]
    out = members["base"] / "cli-ensemble"
    assert main_exit(["graftcv", "ensemble", str(tuned.out_dir), str(probe.out_dir), "--out", str(out)]) == 0
    assert "ensemble (equal weights)" in capsys.readouterr().out
    image = str(members["images"][0])
    assert main_exit(["graftcv", "predict", str(out / "model"), image, "--tta", "flip"]) == 0
    assert "TTA flip: 2 forward passes per image" in capsys.readouterr().out
    assert main_exit(["graftcv", "ensemble", str(tuned.out_dir), "--out", str(out / "x")]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_greedy_soup_is_one_network_of_averaged_weights(members, tmp_path):
    from conftest import TINY

    tuned = members["runs"][0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(members["base"] / "cache"))
        other = graftcv.fit(members["data"], out=tmp_path / "other", strategy="head", **(TINY | {"lr": 3e-2}))
    run = graftcv.ensemble([tuned.out_dir, other.out_dir], tmp_path / "soup", weights="soup")
    meta = json.loads((tmp_path / "soup" / "model" / "graftcv.json").read_text())
    assert meta["kind"] == "classifier" and meta["backbone"] == "resnet10t" and 1 <= len(meta["soup"]) <= 2
    assert sum(1 for w in run.summary["weights"] if w > 0) == len(meta["soup"])
    best_member = max(r["val_accuracy"] for r in run.summary["members"])
    assert run.summary["val_accuracy"] >= best_member - 1e-9  # greedy: never below its first ingredient
    with pytest.raises(GraftcvError, match="cannot join a soup"):
        graftcv.ensemble([tuned.out_dir, members["runs"][1].out_dir], tmp_path / "bad-soup", weights="soup")
