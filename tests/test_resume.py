"""Pickle-free checkpoints, and a run killed with SIGKILL that `resume` continues from its last epoch."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, write_class_folders

import graftcv
from graftcv.training.checkpoint import load_state, save_state

SETTINGS = {**TINY, "strategy": "finetune", "head_epochs": 2, "epochs": 40, "patience": 100}


def test_state_round_trip_keeps_types(tmp_path):
    state = {
        "weights": {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "groups": [{"betas": (0.9, 0.999), "lr": 1e-3}]},
        "best": math.inf,
        "nothing": None,
        "rows": [{"phase": "head", "val_acc": 0.5}],
    }
    save_state(state, tmp_path / "s.ckpt")
    back = load_state(tmp_path / "s.ckpt")
    assert torch.equal(back["weights"]["a"], state["weights"]["a"]) and back["weights"]["b"].dtype == torch.int64
    assert list(back["optimizer"]["state"]) == [0]  # int keys stay ints
    assert back["optimizer"]["groups"][0]["betas"] == (0.9, 0.999)  # tuples stay tuples
    assert back["best"] == math.inf and back["nothing"] is None and back["rows"] == state["rows"]
    header_length = int.from_bytes((tmp_path / "s.ckpt").read_bytes()[:8], "little")
    assert (tmp_path / "s.ckpt").read_bytes()[8:9] == b"{" and header_length > 0  # safetensors, not a pickle


def test_unknown_objects_are_refused_rather_than_pickled(tmp_path):
    with pytest.raises(TypeError, match="without pickle"):
        save_state({"f": object()}, tmp_path / "s.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(graftcv.GraftcvError, match="Cannot read the checkpoint"):
        load_state(tmp_path / "junk.ckpt")


def _start_run(data: Path, out: Path) -> subprocess.Popen:
    code = f"import graftcv; graftcv.fit({str(data)!r}, out={str(out)!r}, **{SETTINGS!r})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)


def test_killed_run_resumes_from_its_last_epoch(tmp_path):
    data = write_class_folders(tmp_path / "data", classes=2, per_class=6)
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "phase1-last.ckpt"
    process = _start_run(data, out)
    deadline = time.monotonic() + 120
    epochs_saved = 0
    while epochs_saved < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        try:
            epochs_saved = len(load_state(checkpoint)["callbacks"]["EpochLog"]["rows"])
        except (graftcv.GraftcvError, KeyError):
            continue
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert epochs_saved >= 3, "the run never wrote a checkpoint to kill it after"
    assert not (out / "summary.json").exists()
    saved_rows = load_state(checkpoint)["callbacks"]["EpochLog"]["rows"]

    run = graftcv.fit(None, out=out, resume=True, progress=False)

    history = run.history
    assert [row["epoch"] for row in history] == list(range(1, 2 + 40 + 1))  # 2 head + 40 finetune epochs
    finetune = [row for row in history if row["phase"] == "finetune"]
    assert finetune[: len(saved_rows)] == saved_rows  # the epochs before the kill were kept, not redone
    assert (out / "summary.json").is_file() and not (out / "checkpoints").exists()
    assert graftcv.load(out / "model").predict(str(data / "class_0"))[0]["class"] in ("class_0", "class_1")


def test_resume_refuses_finished_runs_and_changed_settings(tmp_path):
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    out = tmp_path / "run"
    graftcv.fit(data, out=out, **TINY)
    with pytest.raises(graftcv.GraftcvError, match="finished run"):
        graftcv.fit(None, out=out, resume=True)
    (out / "summary.json").unlink()
    with pytest.raises(graftcv.GraftcvError, match="keeps its settings; drop epochs"):
        graftcv.fit(None, out=out, resume=True, epochs=7)
    with pytest.raises(graftcv.GraftcvError, match="no run to resume"):
        graftcv.fit(None, out=tmp_path / "nothing", resume=True)
    assert json.loads((out / "config.json").read_text())["epochs"] == 1


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    data = write_class_folders(tmp_path / "data", classes=2, per_class=6)
    out = tmp_path / "run"
    args = ["train", str(data), "--out", str(out), "--model", "resnet10t", "--no-pretrained", "--size", "32"]
    args += ["--strategy", "full", "--epochs", "60", "--patience", "100", "--batch-size", "8", "--workers", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "graftcv.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    checkpoint = out / "checkpoints" / "phase0-last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), "training never reached its first checkpoint"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert (out / "config.json").is_file() and not (out / "summary.json").exists()  # resumable, not finished
