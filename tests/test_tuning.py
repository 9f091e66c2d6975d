"""graftcv tune: the study's outputs, pruning on validation loss, resuming after SIGKILL, two processes on one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import graftcv
from graftcv import GraftcvError

optuna = pytest.importorskip("optuna")

SPACE = {
    "strategy": {"kind": "categorical", "choices": ["head", "linear-probe"], "default": "head"},
    "lr": {"kind": "float", "low": 1e-4, "high": 1e-2, "log": True, "when": ["head"], "default": 3e-3},
    "epochs": {"kind": "int", "low": 1, "high": 2, "when": ["head"], "default": 1},
    "head": {"kind": "categorical", "choices": ["logreg", "svm"], "when": ["linear-probe"]},
}


@pytest.fixture
def tune_data(make_split_folder, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return make_split_folder("tune", test="test", n_train=6, n_val=3), space


def tiny_settings() -> dict:
    from conftest import TINY

    return {k: v for k, v in TINY.items() if k != "epochs"}


def test_tune_keeps_the_best_trial_and_scores_test_once(tune_data, tmp_path):
    data, space = tune_data
    run = graftcv.tune(data, tmp_path / "t", budget=None, trials=3, space=space, **tiny_settings())
    out = run.out_dir
    for name in ("model/graftcv.json", "study.db", "trials.csv", "trials.json", "tune.json", "summary.json",
                 "test_metrics.json", "val_metrics.json", "tune_history.png"):  # fmt: skip
        assert (out / name).is_file(), name
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 3 and [r["number"] for r in rows] == [0, 1, 2]
    assert rows[0]["param_strategy"] == "head" and rows[1]["param_strategy"] == "linear-probe"  # enqueued first
    record = json.loads((out / "tune.json").read_text())
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: r["value"])
    assert record["best_value"] == best["value"] == run.summary["val_accuracy"]
    assert "test_accuracy" in run.summary and run.summary["n_test"] == 9
    # the trials never saw the test split: none of their run directories holds a test evaluation
    assert not list((out / "trials").glob("*/test_metrics.json"))
    assert graftcv.load(out / "model").predict(str(data / "test"))[0]["class"].startswith("class_")
    from graftcv.report import build_report

    page = build_report(out, cams=False).read_text()
    assert "Hyper-parameter search: 3 trials" in page and "data:image/png;base64" in page


def test_a_bad_trial_is_pruned_on_its_validation_loss(make_folder, tmp_path):
    from graftcv.training.callbacks import listening
    from graftcv.tuning.study import Reporter

    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    good = optuna.trial.create_trial(value=1.0, intermediate_values={1: -0.01, 2: -0.01, 3: -0.01})
    study.add_trial(good)
    trial = study.ask()
    settings = tiny_settings() | {"strategy": "head", "epochs": 3}
    with pytest.raises(optuna.TrialPruned), listening(Reporter(trial)):
        graftcv.fit(make_folder(), tmp_path / "pruned", **settings)
    assert len(trial.storage.get_trial(trial._trial_id).intermediate_values) == 1  # stopped after one epoch
    assert not (tmp_path / "pruned" / "summary.json").exists()


TUNE_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import graftcv
from conftest import TINY
settings = {{k: v for k, v in TINY.items() if k != "epochs"}}
graftcv.tune({data!r}, {out!r}, budget=None, trials={trials}, space={space!r}, storage={storage!r}, heartbeat=1,
             **settings)
"""


def _tune_process(data, out, trials, space, storage) -> subprocess.Popen:
    code = TUNE_SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(data), out=str(out), trials=trials, space=str(space),
        storage=storage,
    )  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _complete(storage: str) -> list:
    try:
        study = optuna.load_study(study_name="graftcv", storage=storage)
    except KeyError:  # not created yet
        return []
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_a_killed_tune_resumes_its_study(tune_data, tmp_path):
    data, space = tune_data
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process = _tune_process(data, tmp_path / "t", 50, space, storage)
    deadline = time.monotonic() + 120
    while len(_complete(storage)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {t.number for t in _complete(storage)}
    assert len(before) >= 2, process.stderr.read().decode()[-2000:]
    time.sleep(2.5)  # past the heartbeat's grace period: the killed trial is stale
    run = graftcv.tune(data, tmp_path / "t", budget=None, trials=len(before) + 2, space=space, storage=storage,
                       heartbeat=1, **tiny_settings())  # fmt: skip
    study = optuna.load_study(study_name="graftcv", storage=storage)
    after = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert before < after and len(after) >= len(before) + 2
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    assert run.summary["tune"]["trials"] == len(study.trials)


def test_two_processes_share_one_study(tune_data, tmp_path):
    data, space = tune_data
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="graftcv", storage=storage, direction="maximize")  # both processes load it
    processes = [_tune_process(data, tmp_path / f"p{i}", 6, space, storage) for i in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
    trials = _complete(storage)
    owners = {Path(t.user_attrs["run_dir"]).parents[1].name for t in trials}
    assert len(trials) >= 6 and owners == {"p0", "p1"}
    assert len({t.number for t in trials}) == len(trials)


def test_tune_refuses_what_it_cannot_run(tune_data, tmp_path):
    data, space = tune_data
    with pytest.raises(GraftcvError, match="--budget, --trials"):
        graftcv.tune(data, tmp_path / "a", budget=None, trials=None)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lr": {"kind": "float", "low": 1}}))
    with pytest.raises(GraftcvError, match="needs low and high"):
        graftcv.tune(data, tmp_path / "b", budget="1m", space=bad)
    with pytest.raises(GraftcvError, match="Every trial failed"):  # stops after three, not at the budget's end
        graftcv.tune(data, tmp_path / "d", budget="10m", space=space, **(tiny_settings() | {"weights": "/no/such.pth"}))
    with pytest.raises(GraftcvError, match="Unknown --sampler"):
        graftcv.tune(data, tmp_path / "c", budget="1m", sampler="annealing", space=space)


def test_presets_fast_and_best(tune_data, tmp_path):
    from graftcv.tuning.presets import run_preset

    data, space = tune_data
    fast = run_preset(data, tmp_path / "fast", "fast", **tiny_settings())
    assert fast.summary["preset"] == "fast" and fast.summary["strategy"] == "linear-probe"
    best = run_preset(data, tmp_path / "best", "best", budget="60s", **tiny_settings())
    summary = best.summary
    members = [json.loads((Path(m) / "summary.json").read_text()) for m in summary["preset_members"]]
    seeds = [json.loads((Path(m) / "config.json").read_text())["seed"] for m in summary["preset_members"]]
    assert seeds == [0, 1, 2]  # a fixed --model: one member per seed, on one split
    assert len({json.dumps(m["n_train"]) for m in members}) == 1
    ensemble_val = json.loads((tmp_path / "best" / "ensemble" / "summary.json").read_text())["val_accuracy"]
    chosen = summary["preset_choice"]
    assert chosen == "ensemble" if ensemble_val >= max(m["val_accuracy"] for m in members) else chosen != "ensemble"
    assert summary["preset"] == "best" and "test_accuracy" in summary and summary["preset_seconds"] < 60
    assert (tmp_path / "best" / "model" / "graftcv.json").is_file()
    assert Path(summary["model_dir"]) == tmp_path / "best" / "model"  # what the CLI prints, not the copied run's
    meta = json.loads((tmp_path / "best" / "model" / "graftcv.json").read_text())
    assert graftcv.load(tmp_path / "best" / "model").tta == meta.get("tta", "none")
    from rich.console import Console

    from graftcv.cli.tables import run_table

    ensemble_summary = json.loads((tmp_path / "best" / "ensemble" / "summary.json").read_text())
    for shown in (summary, ensemble_summary | {"preset": "best", "preset_choice": "ensemble"}):
        console = Console(record=True, width=160)
        console.print(run_table(shown))  # the CLI's table of an ensemble: no epochs or training images of its own
        text = console.export_text()
        assert "val_accuracy" in text and "preset" in text
    with pytest.raises(GraftcvError, match="Unknown --preset"):
        run_preset(data, tmp_path / "x", "slow")


def test_tune_on_multilabel_data_maximises_map(tmp_path):
    from test_multioutput import stripes, write_csv

    rows = stripes(tmp_path / "images")
    labels = write_csv(tmp_path / "images" / "labels.csv", ["path", "labels"], [[n, ";".join(p)] for n, p in rows])
    space = tmp_path / "space.json"
    head = {"kind": "categorical", "choices": ["logreg", "mlp"], "when": ["linear-probe"]}
    mixup = {"kind": "categorical", "choices": [0.0, 0.4], "when": ["head"]}
    chosen = {name: SPACE[name] for name in ("strategy", "lr", "epochs")} | {"head": head, "mixup": mixup}
    space.write_text(json.dumps(chosen))
    run = graftcv.tune(labels, tmp_path / "t", budget=None, trials=3, space=space, **tiny_settings())
    record = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert "mixup" not in record["space"] and record["space"]["head"]["choices"] == ["logreg"]
    assert record["best_value"] == run.summary["val_map_macro"] and run.summary["kind"] == "multi-label"
