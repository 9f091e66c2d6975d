"""Artifacts that cannot be weaponized: no pickle is ever loaded, a checksum guards the weights, saves are atomic."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import graftcv
from graftcv import GraftcvError
from graftcv.artifact import META_FILE, WEIGHTS_FILE, read_artifact, save_artifact, sha256_file
from graftcv.backbones import create_backbone

CLASSES = ["ants", "bees", "wasps"]
# A complete pickle, written by hand (protocol 4: PROTO 4, BININT1 1, STOP): it unpickles to the int 1.
PICKLE_BYTES = b"\x80\x04K\x01."


def tiny_artifact(directory: Path, seed: int = 0) -> Path:
    """A random-init resnet10t saved as a graftcv model: no training needed."""
    torch.manual_seed(seed)
    backbone = create_backbone("resnet10t", len(CLASSES), pretrained=False, size=32)
    meta = {"backbone": "resnet10t", "classes": CLASSES, "data_config": backbone.data_config, "seed": seed}
    return save_artifact(directory, backbone.model, meta)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_artifact(tmp_path / "model")


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return read_artifact(directory)[0]


# --- no pickle -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_files_are_refused_by_name(suffix, tmp_path):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(PICKLE_BYTES)
    with pytest.raises(GraftcvError, match="pickle-based file, which can run code"):
        graftcv.load(path)


def test_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(GraftcvError, match="pickle"):
        graftcv.load(path)


@pytest.mark.parametrize("payload", ["raw-pickle", "torch-zip"])
def test_pickle_disguised_as_safetensors_is_refused(payload, model, tmp_path):
    """Even with a matching checksum in graftcv.json, pickle bytes under the safetensors name are refused."""
    weights = model / WEIGHTS_FILE
    if payload == "raw-pickle":
        weights.write_bytes(PICKLE_BYTES)
    else:
        torch.save({"weight": torch.zeros(2)}, weights)
    meta = json.loads((model / META_FILE).read_text())
    meta["weights_sha256"] = sha256_file(weights)
    (model / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(GraftcvError, match="pickle"):
        graftcv.load(model)


# --- checksum ------------------------------------------------------------------------------------------


def test_checksum_is_recorded(model):
    meta = json.loads((model / META_FILE).read_text())
    assert meta["weights_sha256"] == sha256_file(model / WEIGHTS_FILE)
    graftcv.load(model)


@pytest.mark.parametrize("damage", ["flip-a-bit", "truncate", "append", "swap-weights"])
def test_damaged_weights_fail_the_checksum(damage, model, tmp_path):
    weights = model / WEIGHTS_FILE
    raw = weights.read_bytes()
    if damage == "flip-a-bit":
        weights.write_bytes(raw[:-100] + bytes([raw[-100] ^ 0x01]) + raw[-99:])
    elif damage == "truncate":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "append":
        weights.write_bytes(raw + b"\0" * 16)
    else:  # a valid safetensors file from another model
        shutil.copy(tiny_artifact(tmp_path / "other", seed=1) / WEIGHTS_FILE, weights)
    with pytest.raises(GraftcvError, match="does not match the checksum .* altered or truncated"):
        graftcv.load(model)


@pytest.mark.parametrize("edit", ["missing", "wrong"])
def test_checksum_entry_must_be_there_and_right(edit, model):
    meta = json.loads((model / META_FILE).read_text())
    if edit == "missing":
        del meta["weights_sha256"]
    else:
        meta["weights_sha256"] = "0" * 64
    (model / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(GraftcvError, match="SHA-256 of the weights is missing" if edit == "missing" else "checksum"):
        graftcv.load(model)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"backbone": "resnet10t"}'])
def test_broken_metadata_is_a_clear_error(content, model):
    (model / META_FILE).write_bytes(content)
    with pytest.raises(GraftcvError, match="graftcv.json is not"):
        graftcv.load(model)


def test_cli_reports_a_tampered_model_in_one_line(model, tmp_path):
    weights = model / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-10])
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 20, 20)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "graftcv.cli", "predict", str(model), str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="400"),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum" in errors[0]


# --- atomic save ---------------------------------------------------------------------------------------


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_save_replaces_the_previous_model_whole(model):
    before = _weights(model)
    tiny_artifact(model, seed=1)
    after = _weights(model)
    assert json.loads((model / META_FILE).read_text())["seed"] == 1
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert _leftovers(model.parent, model.name) == []


@pytest.mark.parametrize("where", ["writing-weights", "writing-metadata", "swapping"])
def test_failure_mid_save_keeps_the_previous_model(where, model, monkeypatch):
    import graftcv.artifact as artifact

    before = {name: (model / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)}

    class Crash(BaseException):
        pass

    def crash(*args, **kwargs):
        raise Crash

    if where == "writing-weights":

        def half_then_crash(tensors, path):
            Path(path).write_bytes(b"\x00" * 100)
            raise Crash

        monkeypatch.setattr(artifact, "save_file", half_then_crash)
    elif where == "writing-metadata":
        monkeypatch.setattr(artifact, "sha256_file", crash)
    else:
        real_replace = os.replace

        def replace(source, target):  # the old model is moved aside, then the new one fails to move in
            if Path(source).name.startswith(f".{model.name}.") and not Path(source).name.endswith(".old"):
                raise Crash
            real_replace(source, target)

        monkeypatch.setattr(artifact.os, "replace", replace)
    with pytest.raises(Crash):
        tiny_artifact(model, seed=1)
    monkeypatch.undo()
    assert {name: (model / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)} == before
    assert _leftovers(model.parent, model.name) == []
    graftcv.load(model)


KILL_MID_SAVE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import graftcv.artifact as artifact
from test_artifact_safety import tiny_artifact

def half_then_die(tensors, path):
    Path(path).write_bytes(b"\\x00" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)

artifact.save_file = half_then_die
tiny_artifact(Path(sys.argv[1]), seed=1)
"""


def test_sigkill_mid_save_leaves_the_previous_model(model):
    """A real crash: the saving process is killed while it writes the new weights."""
    before = {name: (model / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)}
    done = subprocess.run(
        [sys.executable, "-c", KILL_MID_SAVE, str(model), str(Path(__file__).parent)], capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert {name: (model / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)} == before
    graftcv.load(model)
    tiny_artifact(model, seed=2)  # the next save goes through despite the dead process's staging directory
    assert json.loads((model / META_FILE).read_text())["seed"] == 2


def test_kill_between_the_two_renames_is_recoverable(model):
    """Killed after moving the old model aside but before moving the new one in: loading says what
    happened, and the next save puts things right."""
    os.replace(model, model.with_name(f".{model.name}.old"))
    with pytest.raises(GraftcvError, match="interrupted save"):
        graftcv.load(model)
    tiny_artifact(model, seed=3)
    assert json.loads((model / META_FILE).read_text())["seed"] == 3
    assert _leftovers(model.parent, model.name) == []
