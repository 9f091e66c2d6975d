"""The saved model: safetensors + JSON, no pickle, checked on load, same predictions in a new process."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graftcv
from graftcv import GraftcvError

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One gradient-trained and one linear-probe model, trained once for this module."""
    from conftest import TINY, write_class_folders

    base = tmp_path_factory.mktemp("artifact")
    data = write_class_folders(base / "data", classes=3, per_class=7)
    cache = base / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(cache))
        head = graftcv.fit(data, out=base / "head-run", strategy="head", **TINY)
        probe = graftcv.fit(data, out=base / "probe-run", strategy="linear-probe", head="logreg", **TINY)
    return {"data": data, "head": head, "probe": probe, "images": sorted(data.rglob("*.jpg"))[::3]}


SCRIPT = """
import json, sys
import graftcv
out = {}
for name, directory in json.loads(sys.argv[1]).items():
    model = graftcv.load(directory)
    probs, names = model.predict_proba(json.loads(sys.argv[2]))
    out[name] = {"classes": model.classes, "probs": probs.tolist(), "names": names,
                 "predicted": [r["class"] for r in model.predict(json.loads(sys.argv[2]))]}
print(json.dumps(out))
"""


def test_new_process_predicts_the_same(runs, tmp_path):
    images = [str(p) for p in runs["images"]]
    dirs = {name: str(runs[name].out_dir / "model") for name in ("head", "probe")}
    env = dict(os.environ, GRAFTCV_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(dirs), json.dumps(images)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    other = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("head", "probe"):
        model = runs[name].model
        probs, names = model.predict_proba(images)
        assert other[name]["classes"] == model.classes == ["class_0", "class_1", "class_2"]
        assert other[name]["names"] == names == images
        assert np.abs(np.array(other[name]["probs"]) - probs).max() < 1e-5
        assert other[name]["predicted"] == [model.classes[i] for i in probs.argmax(1)]
    # the linear probe separates the colours, so the comparison is about real predictions
    assert other["probe"]["predicted"] == [Path(p).parent.name for p in images]


def test_load_in_process_matches_fit(runs):
    for name in ("head", "probe"):
        fitted = runs[name].model
        loaded = graftcv.load(runs[name].out_dir / "model")
        a, _ = fitted.predict_proba(runs["images"])
        b, _ = loaded.predict_proba(runs["images"])
        assert np.abs(a - b).max() < 1e-5
        assert loaded.meta["strategy"] == runs[name].summary["strategy"]
        assert loaded.data_config["input_size"] == [3, 32, 32]


def _looks_like_safetensors(path: Path) -> bool:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    return all("dtype" in v and "data_offsets" in v for k, v in header.items() if k != "__metadata__")


@pytest.mark.parametrize("name", ["head", "probe"])
def test_run_directory_has_no_pickle(runs, name):
    out_dir = runs[name].out_dir
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert {p.relative_to(out_dir).as_posix() for p in files} >= {
        "config.json",
        "summary.json",
        "metrics.csv",
        "model/model.safetensors",
        "model/graftcv.json",
    }
    assert not [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    assert not [p for p in out_dir.rglob(".*")], "no staging directories left behind"
    for path in files:
        if path.name == "model.safetensors":
            # its first byte is the low byte of the header length, so check the format instead
            assert _looks_like_safetensors(path)
            continue
        head = path.read_bytes()[:4]
        assert not head.startswith(b"\x80"), path  # pickle protocol 2+
        assert not head.startswith(b"PK\x03\x04"), path  # torch.save's zip container
        path.read_text(encoding="utf-8")  # everything else is text


def test_probe_is_stored_as_tensors(runs):
    model_dir = runs["probe"].out_dir / "model"
    meta = json.loads((model_dir / "graftcv.json").read_text())
    assert meta["kind"] == "probe" and meta["strategy"] == "linear-probe" and meta["head"] == "logreg"
    assert meta["classes"] == ["class_0", "class_1", "class_2"]
    from safetensors.torch import load_file

    tensors = load_file(str(model_dir / "model.safetensors"))
    probe_keys = [k for k in tensors if k.startswith("probe.")]
    assert probe_keys and all(isinstance(tensors[k], torch.Tensor) for k in probe_keys)
    assert [op["op"] for op in meta["probe"]] == ["affine", "affine", "softmax"]
    assert not any(k.startswith("model.fc.") for k in tensors)  # the timm classifier was dropped

    head_meta = json.loads((runs["head"].out_dir / "model" / "graftcv.json").read_text())
    assert head_meta["kind"] == "classifier" and "probe" not in head_meta
    assert len(head_meta["weights_sha256"]) == 64


def test_loading_a_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(GraftcvError, match="pickle"):
        graftcv.load(path)


def test_tampered_weights_fail_the_checksum(runs, tmp_path):
    copy = shutil.copytree(runs["head"].out_dir / "model", tmp_path / "model")
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(GraftcvError, match="checksum"):
        graftcv.load(copy)


def test_not_a_model_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GraftcvError, match="not a graftcv model"):
        graftcv.load(tmp_path / "empty")


def test_save_and_reload_elsewhere(runs, tmp_path):
    model = runs["probe"].model
    target = model.save(tmp_path / "copy")
    again = model.save(tmp_path / "copy")  # saving over an existing artifact replaces it
    assert target == again
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["copy"]
    loaded = graftcv.load(target)
    a, _ = model.predict_proba(runs["images"])
    b, _ = loaded.predict_proba(runs["images"])
    assert np.abs(a - b).max() < 1e-5


def test_predict_inputs_and_topk(runs):
    model = runs["head"].model
    paths = runs["images"][:3]
    from_paths, names = model.predict_proba(paths)
    images = [Image.open(p).convert("RGB") for p in paths]
    from_pil, pil_names = model.predict_proba(images)
    assert pil_names == ["0", "1", "2"]
    assert np.abs(from_paths - from_pil).max() < 1e-5
    rows = model.predict(paths, topk=5)
    assert len(rows) == 3 and all(len(r["top"]) == 3 for r in rows)  # capped at the number of classes
    for row, p in zip(rows, from_paths, strict=True):
        assert [t["probability"] for t in row["top"]] == sorted(p.tolist(), reverse=True)
        assert row["class"] == model.classes[int(p.argmax())]


def test_evaluate_rejects_unknown_classes(runs, tmp_path):
    from conftest import write_class_folders

    other = write_class_folders(tmp_path / "other", classes=4, per_class=2)
    with pytest.raises(GraftcvError, match="class_3"):
        runs["probe"].model.evaluate(other)
    report = runs["probe"].model.evaluate(runs["data"])
    assert report["n"] == 21 and report["skipped_files"] == 0
    assert report["accuracy"] >= 0.8
