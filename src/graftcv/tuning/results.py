"""What a finished `tune` leaves: the best model as a normal run (scored once on test), the trials table, each
hyper-parameter's importance and the study's plots."""

from __future__ import annotations

import csv
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np

from graftcv.atomic import write_json
from graftcv.data import DataSplits
from graftcv.errors import GraftcvError
from graftcv.evaluation.outputs import headline, report_for
from graftcv.fitting import fit
from graftcv.model import load
from graftcv.outcomes import Run
from graftcv.rundir import RunDir
from graftcv.tuning.space import Space

log = logging.getLogger("graftcv")
STUDY_FILE = "study.db"
TRIALS = "trials"
TUNE_FILE = "tune.json"
TRIALS_CSV = "trials.csv"
TRIALS_JSON = "trials.json"
HISTORY_PNG = "tune_history.png"
IMPORTANCE_PNG = "tune_importance.png"


def trial_rows(study) -> list[dict]:
    rows = []
    for trial in study.trials:
        row = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "value": trial.value,
            "seconds": trial.user_attrs.get("seconds"),
            "val_log_loss": trial.user_attrs.get("val_log_loss"),
            "epochs_reported": len(trial.intermediate_values),
        }
        rows.append(
            row | {f"param_{k}": v for k, v in trial.params.items()} | {"run_dir": trial.user_attrs.get("run_dir")}
        )
    return rows


def best_trial(study):
    """The finished trial with the best validation headline; of equals, the lower validation log loss."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not complete:
        raise GraftcvError("No trial finished within the budget: give a longer --budget (or more --trials).")
    return max(complete, key=lambda t: (t.value, -(t.user_attrs.get("val_log_loss") or 0.0), -t.number))


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the finished trials; empty when too few to say."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError) as error:  # fewer than two trials, or one value
        log.info("No parameter importances: %s", str(error)[:120])
        return {}


def write_plots(study, out: Path, found: dict) -> list[str]:
    """Optimisation history and parameter importance (optuna.visualization.matplotlib) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        for name, draw, wanted in (
            (HISTORY_PNG, plots.plot_optimization_history, True),
            (IMPORTANCE_PNG, plots.plot_param_importances, bool(found)),
        ):
            if not wanted:
                continue
            try:
                axes = draw(study)
            except (RuntimeError, ValueError) as error:
                log.info("No %s: %s", name, str(error)[:120])
                continue
            figure = axes.figure if hasattr(axes, "figure") else plt.gcf()
            figure.set_size_inches(7, 4)
            figure.tight_layout()
            figure.savefig(out / name, dpi=100)
            plt.close(figure)
            written.append(name)
    return written


def copy_run(source: Path, target: Path) -> None:
    """The best trial's run files into OUT (its model replaced whole, never half)."""
    for item in source.iterdir():
        if item.name in ("checkpoints", TRIALS, STUDY_FILE, "refit") or item.name.startswith("."):
            continue
        destination = target / item.name
        if item.is_dir():
            staging = target / f".{item.name}.copy"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(item, staging)
            shutil.rmtree(destination, ignore_errors=True)
            staging.rename(destination)
        else:
            shutil.copy2(item, destination)


def write_trials(rows: list[dict], out: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (out / TRIALS_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / TRIALS_JSON, rows)


def finish(
    study, space: Space, splits: DataSplits, out: Path, fixed: dict, storage: str, budget: str | None, seconds: float
) -> Run:
    best = best_trial(study)
    rows = trial_rows(study)
    write_trials(rows, out)
    found = importances(study)
    plots = write_plots(study, out, found)
    source = Path(best.user_attrs.get("run_dir", ""))
    run_dir = RunDir(out)
    if (source / "summary.json").is_file():
        copy_run(source, out)
        model = load(run_dir.model)
        summary = run_dir.summary() or {}
        test_report = score_test(model, splits, run_dir)
        if test_report is not None:
            summary |= {f"test_{k}": v for k, v in headline(test_report).items()} | {"n_test": len(splits.test)}
    else:  # another machine ran it: the same settings, refitted here with the test split
        log.warning("The best trial's run %s is not on this machine: refitting its settings.", source)
        whole = DataSplits.from_sets(splits.train, splits.val, splits.test, source=splits.source, tasks=splits.tasks)
        refit = fit(whole, out / "refit", overwrite=True, **(fixed | best.params))
        copy_run(refit.out_dir, out)
        model, summary = refit.model, dict(refit.summary)
    states = [r["state"] for r in rows]
    record = {
        "study": study.study_name,
        "storage": storage,
        "budget": budget,
        "seconds": round(seconds, 1),
        "trials": len(rows),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("fail"),
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "importance": found,
        "space": space.as_dict(),
        "fixed": {k: v for k, v in fixed.items() if k != "progress"},
        "plots": plots,
    }
    write_json(out / TUNE_FILE, record)
    summary |= {"tune": {k: record[k] for k in ("trials", "complete", "pruned", "failed", "best_trial", "seconds")}}
    summary["model_dir"] = str(run_dir.model)
    run_dir.write_summary(summary)
    return Run(out_dir=out, model=model, summary=summary, config=run_dir.config() or {})


def score_test(model, splits: DataSplits, run_dir: RunDir) -> dict | None:
    """The chosen model on the held-out test split: the one time the study's choice meets it."""
    test = splits.test
    if test is None or not len(test):
        return None
    probs, _ = model.predict_proba([str(p) for p in test.paths], progress=False)
    truth = test.targets(splits.classes)
    report = report_for(np.asarray(truth), probs, splits.classes, model.tasks)
    run_dir.write_evaluation("test", report, test, probs, splits.classes, model.tasks)
    return report
