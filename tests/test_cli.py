"""The `graftcv` command line: exit codes and messages for bad input, and train → predict → evaluate."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import COLOURS, write_class_folders, write_image
from typer.testing import CliRunner

import graftcv
import graftcv.cli
from graftcv.choices import REGISTRIES
from graftcv.cli import app
from graftcv.config import TrainConfig

GRAFTCV = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "graftcv"
TINY_ARGS = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--epochs", "1", "--head-epochs", "1",
             "--batch-size", "8", "--workers", "0"]  # fmt: skip


def run_cli(*args, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="400", GRAFTCV_CACHE=str(cwd / ".cache"))
    command = [str(GRAFTCV)] if GRAFTCV.exists() else [sys.executable, "-m", "graftcv.cli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def flat(text: str) -> str:
    """Rich wraps long lines; compare messages with whitespace collapsed."""
    return " ".join(text.split())


# --- bad input -----------------------------------------------------------------------------------------


def _bad_inputs(base: Path) -> dict[str, tuple[list, str]]:
    """name → (arguments after `train`, a fragment the error message must contain)."""
    good = write_class_folders(base / "good", classes=2, per_class=5)
    empty = base / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "cats" / "notes.txt").write_text("no images here")
    one = write_class_folders(base / "one", classes=1, per_class=5)
    lonely = write_class_folders(base / "lonely", classes=2, per_class=5)
    write_image(lonely / "solo" / "a.jpg", COLOURS[3], seed=1)
    split = base / "split"
    write_class_folders(split / "train", classes=2, per_class=4)
    write_class_folders(split / "val", classes=2, per_class=2)
    write_image(split / "val" / "zebra" / "z.jpg", COLOURS[4], seed=2)
    return {
        "missing-path": ([base / "nowhere"], "does not exist"),
        "no-images": ([empty], "No images found"),
        "one-class": ([one], "Only one class ('class_0')"),
        "one-image-class": ([lonely], "Class 'solo' has fewer than 2 training images"),
        "unknown-val-class": ([split], "classes not in training: zebra"),
        "unknown-strategy": ([good, "--strategy", "bogus"], "Unknown strategy 'bogus'"),
        "unknown-model": ([good, "--model", "resnet10tt"], "Unknown backbone 'resnet10tt'"),
        "not-weights": ([good, "--weights", _text(base / "weights.pth")], "is not a weights file"),
        "not-safetensors": ([good, "--weights", _text(base / "w.safetensors")], "is not a weights file"),
        "out-is-a-file": ([good, "--out", _text(base / "taken")], "is a file: give a directory"),
        "no-devices": ([good, "--devices", "0", "--accelerator", "cpu"], "--devices must be auto or a count"),
    }


def _text(path: Path) -> Path:
    path.write_text("not what it seems\n")
    return path


BAD = ["missing-path", "no-images", "one-class", "one-image-class", "unknown-val-class", "unknown-strategy",
       "unknown-model", "not-weights", "not-safetensors", "out-is-a-file", "no-devices"]  # fmt: skip


def _previous_run(directory: Path, finished: bool) -> dict[str, bytes]:
    """A run directory from an earlier run: interrupted (no summary.json) or finished."""
    files = {
        "config.json": b'{"strategy": "head"}',
        "metrics.csv": b"phase,epoch\nhead,1\n",
        "model/graftcv.json": b'{"kind": "classifier"}',
        "model/model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    }
    if finished:
        files["summary.json"] = b'{"val_accuracy": 0.9}'
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    return files


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_error_line(case, tmp_path, monkeypatch, capsys, restore_logging):
    """main() in this process (fast): the exit code, the message, and the run directory left alone."""
    args, fragment = _bad_inputs(tmp_path)[case]
    out = tmp_path / "previous-run"
    before = _previous_run(out, finished=False)
    # a later --model overrides the one in TINY_ARGS
    monkeypatch.setattr(sys, "argv", ["graftcv", "train", *TINY_ARGS, "--out", str(out), *map(str, args)])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert fragment in flat(err)
    assert "Traceback" not in err
    assert _contents(out) == before, "a failing run must not touch an existing run directory"


@pytest.mark.parametrize("overwrite", [False, True])
def test_finished_run_is_kept(overwrite, tmp_path, monkeypatch, capsys, restore_logging):
    """Without --overwrite a finished run is refused; with it, a run that fails still leaves it whole."""
    data = write_class_folders(tmp_path / "data", classes=2, per_class=4) if not overwrite else tmp_path / "nowhere"
    out = tmp_path / "finished"
    before = _previous_run(out, finished=True)
    argv = ["graftcv", "train", str(data), *TINY_ARGS, "--out", str(out)] + (["--overwrite"] if overwrite else [])
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    assert done.value.code == 2
    err = flat(capsys.readouterr().err)
    assert ("already holds a finished run" in err) != overwrite
    assert ("does not exist" in err) == overwrite
    assert _contents(out) == before


@pytest.mark.parametrize("case", ["missing-path", "unknown-strategy"])
def test_bad_input_in_a_real_process(case, tmp_path):
    args, fragment = _bad_inputs(tmp_path)[case]
    done = run_cli("train", *TINY_ARGS, "--out", tmp_path / "never", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] != []
    assert fragment in flat(done.stderr)
    assert not (tmp_path / "never").exists()


def test_unknown_option_is_a_usage_error(tmp_path):
    done = run_cli("train", tmp_path, "--no-such-option", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "--no-such-option" in done.stderr


# --- train's options, generated from TrainConfig -----------------------------------------------------------


class FitCalled(Exception):
    """Stops `train` once the recorder has seen what it would have trained with."""


@pytest.fixture
def fit_calls(monkeypatch) -> list[tuple[tuple, dict]]:
    calls: list[tuple[tuple, dict]] = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise FitCalled

    monkeypatch.setattr(graftcv, "fit", record)
    return calls


def test_train_help_lists_every_config_option():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for item in fields(TrainConfig):
        flag = item.metadata["flag"] or f"--{item.name.replace('_', '-')}"
        # a whole flag: --progress (not offered) is inside --progressive-resize
        offered = re.search(rf"{re.escape(flag)}(?![\w-])", result.output) is not None
        assert offered == item.metadata["cli"], flag
    assert "--no-pretrained" in result.output and "--no-cache" in result.output
    for flag in ("--out", "--overwrite", "--resume"):
        assert flag in result.output
    for registry in REGISTRIES.values():  # registry-backed help lists the registered names
        assert registry.choices_help() in result.output
    assert "none | light | strong" in result.output and "(tf_efficientnet_lite0)" in result.output


def test_train_passes_only_the_options_given(tmp_path, fit_calls):
    args = ["train", str(tmp_path), "--epochs", "2", "--no-pretrained", "--workers", "0", "--lr", "auto"]
    result = CliRunner().invoke(app, [*args, "--devices", "1", "--strategy", "made-by-a-plugin"])
    assert isinstance(result.exception, FitCalled), result.output
    [(positional, settings)] = fit_calls
    assert positional == (str(tmp_path),)  # a str: shard sets may be URLs
    assert settings == {
        "out": None,
        "overwrite": False,
        "epochs": 2,
        "pretrained": False,
        "num_workers": 0,
        "lr": "auto",
        "devices": 1,
        "strategy": "made-by-a-plugin",  # checked by fit against the registry, not by the CLI
    }


def test_resume_passes_the_run_dir_and_the_given_options(tmp_path, fit_calls):
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--lr", "1e-3"])
    assert isinstance(result.exception, FitCalled), result.output
    assert fit_calls == [((None,), {"out": tmp_path, "resume": True, "lr": 1e-3})]


# --- a successful run, then predict and evaluate ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    data = write_class_folders(base / "data", classes=2, per_class=6)
    out = base / "run"
    done = run_cli("train", data, *TINY_ARGS, "--strategy", "head", "--out", out, cwd=base)
    return base, data, out, done


def test_train_writes_the_run(trained):
    _, data, out, done = trained
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "val_accuracy" in done.stdout
    for name in ("config.json", "metrics.csv", "summary.json", "model/model.safetensors", "model/graftcv.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in ("strategy", "model", "epochs", "train_seconds", "val_accuracy", "val_macro_f1", "n_train", "n_val",
                "skipped_files"):  # fmt: skip
        assert key in summary, key
    assert summary["strategy"] == "head" and summary["model"] == "resnet10t"
    assert summary["epochs"] == 1 and summary["n_train"] + summary["n_val"] == 12
    assert summary["skipped_files"] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "head" and config["pretrained"] is False and config["size"] == 32
    assert config["data"] == str(data.resolve())
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["phase"] for r in rows] == ["head"]
    meta = json.loads((out / "model" / "graftcv.json").read_text())
    assert meta["classes"] == ["class_0", "class_1"] and meta["backbone"] == "resnet10t"


def test_predict_writes_csv(trained):
    base, data, out, _ = trained
    image = data / "class_1" / "img_03.jpg"
    target = base / "predictions.csv"
    done = run_cli("predict", out / "model", image, data / "class_0", "--topk", "2", "--csv", target, cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    with target.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "class1", "prob1", "class2", "prob2"]
    assert len(rows) == 1 + 1 + 6
    assert rows[1][0] == str(image)
    for row in rows[1:]:
        assert {row[1], row[3]} == {"class_0", "class_1"}
        p1, p2 = float(row[2]), float(row[4])
        assert 1.0 >= p1 >= p2 >= 0.0 and abs(p1 + p2 - 1.0) < 1e-4


def test_evaluate_writes_reports(trained):
    base, data, out, _ = trained
    target = base / "eval"
    done = run_cli("evaluate", out / "model", data, "--out", target, cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((target / "metrics.json").read_text())
    assert report["n"] == 12 and 0.0 <= report["accuracy"] <= 1.0
    assert (target / "per_class.csv").is_file() and (target / "confusion_matrix.csv").is_file()
    assert sum(map(sum, report["confusion_matrix"])) == 12


def test_models_lists_the_bundled_weights(tmp_path):
    done = run_cli("models", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "tf_efficientnet_lite0" in line]
    assert len(lines) == 1
    cells = [c.strip() for c in lines[0].replace("│", "|").split("|") if c.strip()]
    assert cells[:2] == ["tf_efficientnet_lite0", "package"]
    assert "resnet50" in done.stdout
