"""Several processes, one run: `graftcv train --devices 2` on the CPU (gloo), as a user launches it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import graftcv
from graftcv import distributed
from graftcv.config import TrainConfig
from graftcv.data.shard_writer import write_shards
from graftcv.errors import GraftcvError

GRAFTCV = Path(sys.executable).parent / "graftcv"
TINY_ARGS = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--batch-size", "8", "--workers", "0"]


def _graftcv(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The command as a user runs it: Lightning re-runs it once per extra rank, so it cannot run inside pytest.
    Its own session, so that a hang kills every rank, not only the first."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [str(GRAFTCV), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_two_processes_train_one_run(make_folder, tmp_path: Path) -> None:
    data = make_folder(classes=2, per_class=10)
    args = ["train", str(data), *TINY_ARGS, "--epochs", "2", "--head-epochs", "2", "--out", "run"]
    result = _graftcv([*args, "--devices", "2", "--accelerator", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stdout.count("val_accuracy") == 1  # rank 0 reports; rank 1 returns quietly
    assert sorted(p.name for p in tmp_path.iterdir() if p.name[0] != ".") == ["data", "run"]  # one run, no runs/
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert summary["world_size"] == 2 and config["world"]["devices"] == 2
    assert (run / "model" / "model.safetensors").is_file() and not (run / "checkpoints").exists()
    # validation gathered from both ranks: every validation image once, in order, and the metric agrees with it
    with (run / "val_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["n_val"] == 4 and len({r["path"] for r in rows}) == 4
    correct = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    assert summary["val_accuracy"] == pytest.approx(correct)
    epochs = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert len(epochs) == summary["epochs"] == 4  # 2 head + 2 fine-tuning epochs, logged once


def test_two_processes_adapt_with_a_target_stream(make_folder, tmp_path: Path) -> None:
    """Each rank pairs its share of the source with target images; rank 0 measures and writes adaptation.json."""
    source, target = (
        make_folder("source", classes=2, per_class=10),
        make_folder("target", classes=2, per_class=6, seed=5),
    )
    args = ["adapt", str(source), "--target", str(target), "--target-labels", str(target), "--method", "coral",
            *TINY_ARGS, "--epochs", "2", "--head-epochs", "1", "--out", "run", "--devices", "2",
            "--accelerator", "cpu"]  # fmt: skip
    result = _graftcv(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("target: accuracy") == 1  # rank 0 reports
    found = json.loads((tmp_path / "run" / "adaptation.json").read_text())
    assert found["method"] == "coral" and 0 <= found["target_accuracy"] <= 1
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["phase"] == "finetune"]
    assert len(rows) == 2 and all(row["discrepancy"] != "" for row in rows)


def test_two_processes_refuse_what_they_cannot_share(make_folder, tmp_path: Path) -> None:
    # refused before any rank starts, so it runs in this process
    data = make_folder(classes=2, per_class=4)
    for option, sentence in (
        ((("budget", "1m")), "--budget plans a run of one process"),
        ((("lr", "auto")), "--lr auto"),
    ):
        with pytest.raises(GraftcvError, match=sentence):
            graftcv.fit(data, out=tmp_path / "run", devices=2, accelerator="cpu", **dict([option]))
    assert not (tmp_path / "run").exists()


def test_blocks_cover_everything_once() -> None:
    for n in (0, 1, 5, 17):
        for world in (1, 2, 3, 4):
            shares = [list(distributed.block(n, r, world)) for r in range(world)]
            assert sum(shares, []) == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_launcher_environment_sets_the_world(monkeypatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    world = distributed.world_of(TrainConfig())
    assert (world.devices, world.num_nodes, world.size, world.external) == (4, 2, 8, True)
    with pytest.raises(GraftcvError, match="started 4 process"):
        distributed.world_of(TrainConfig(devices=2))
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert distributed.world_of(TrainConfig(devices=3, num_nodes=2)).size == 6


def test_fsdp_and_bad_counts_are_refused() -> None:
    with pytest.raises(GraftcvError, match="use ddp"):
        TrainConfig(strategy_ddp="fsdp").validate()
    with pytest.raises(GraftcvError, match="--num-nodes must be at least 1"):
        TrainConfig(num_nodes=0).validate()


def test_killed_two_process_run_resumes_on_two_processes(make_folder, tmp_path: Path) -> None:
    """Both ranks killed mid-run (SIGKILL to the session); `--resume` goes on from the last saved epoch."""
    import time

    from graftcv.training.checkpoint import load_state

    data = make_folder(classes=2, per_class=10)
    args = ["train", str(data), *TINY_ARGS, "--head-epochs", "1", "--epochs", "7", "--patience", "100"]
    process = subprocess.Popen(
        [str(GRAFTCV), *args, "--out", "run", "--devices", "2", "--accelerator", "cpu"], cwd=tmp_path,
        env=os.environ | {"OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    checkpoint, saved, deadline = tmp_path / "run" / "checkpoints" / "phase1-last.ckpt", [], time.monotonic() + 200
    while len(saved) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
        try:
            saved = load_state(checkpoint)["callbacks"]["EpochLog"]["rows"]
        except (GraftcvError, KeyError):
            continue
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(saved) >= 3, "the run never wrote a checkpoint to kill it after"
    saved = load_state(checkpoint)["callbacks"]["EpochLog"]["rows"]

    result = _graftcv(["train", "--resume", "run", "--devices", "2", "--accelerator", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 1 + 7 + 1))
    kept = [r for r in rows if r["phase"] == "finetune"][: len(saved)]
    assert [float(r["train_loss"]) for r in kept] == pytest.approx([r["train_loss"] for r in saved])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["world_size"] == 2


def test_two_processes_stream_shards(make_folder, tmp_path: Path) -> None:
    """DDP over shards: each rank streams its own share; validation outputs come back in the index's order."""
    data = make_folder(classes=2, per_class=10)
    write_shards(data, tmp_path / "shards", shard_size="4KB")
    args = ["train", "shards", *TINY_ARGS, "--epochs", "1", "--head-epochs", "1", "--out", "run"]
    result = _graftcv([*args, "--devices", "2", "--accelerator", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "shards" / "val-index.csv").open() as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    with (tmp_path / "run" / "val_predictions.csv").open() as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == names
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["world_size"] == 2
