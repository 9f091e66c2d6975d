"""`train --preset fast|balanced|best`: documented bundles of strategy, size, epochs, search, ensemble and TTA that
choose within a time budget."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftcv.artifact import update_meta
from graftcv.config import TrainConfig, parse_duration
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.model import load
from graftcv.outcomes import Run
from graftcv.rundir import RunDir, read_json

log = logging.getLogger("graftcv")
ENSEMBLE_MEMBERS = 3  # best's ensemble: the top finished trials of the study
SEARCH_SHARE = 0.75  # best: the study's share of the budget; the rest ensembles, checks TTA and scores test


@dataclass(frozen=True)
class Preset:
    name: str
    help: str
    settings: dict
    default_budget: str | None = None


PRESETS = {
    p.name: p
    for p in (
        Preset("fast", "linear probe (logistic regression) on 128 px features: about a minute on 1,000 images",
               {"strategy": "linear-probe", "head": "logreg", "size": 128}),
        Preset("balanced", "fine-tuning at 160 px, epochs chosen to fit --budget (default 10m), flip TTA if it helps",
               {"strategy": "finetune", "size": 160}, "10m"),
        Preset("best", "tune (Optuna) for 3/4 of --budget (default 20m), then an ensemble of the top 3 trials and "
               "flip TTA, each kept only when it improves validation", {}, "20m"),
    )
}  # fmt: skip


def run_preset(data, out: str | Path, preset: str, budget: str | None = None, **settings) -> Run:
    """Train with a preset; caller's settings override the preset's (a fixed setting is not searched)."""
    if preset not in PRESETS:
        raise GraftcvError(f"Unknown --preset {preset!r}: choose one of {', '.join(PRESETS)}.")
    found = PRESETS[preset]
    budget = budget or found.default_budget
    started = time.monotonic()
    if out is None:
        raise GraftcvError("--preset needs --out: its run directory.")
    out = Path(out)
    if found.name == "best":
        run = _best(data, out, budget, settings, started)
    else:
        import graftcv

        fit_settings = found.settings | settings | ({"budget": budget} if budget else {})
        run = graftcv.fit(data, out, overwrite=True, **fit_settings)
        if found.name == "balanced" and _choose_tta(run.out_dir):
            _rescore_test(run.out_dir)
    summary = (RunDir(out).summary() or run.summary) | {"preset": found.name, "preset_budget": budget}
    summary["preset_seconds"] = round(time.monotonic() - started, 1)
    RunDir(out).write_summary(summary)
    return Run(out_dir=out, model=load(out / "model"), summary=summary, config=RunDir(out).config() or {})


def _best(data, out: Path, budget: str, settings: dict, started: float) -> Run:
    import optuna

    from graftcv.ensembling import ensemble
    from graftcv.tuning.results import score_test
    from graftcv.tuning.study import trial_splits, tune

    seconds = parse_duration(budget, "--budget").total_seconds()
    search_budget = f"{int(seconds * SEARCH_SHARE)}s"
    tuned = tune(data, out / "tune", budget=search_budget, **settings)
    storage = (read_json(out / "tune" / "tune.json") or {}).get("storage") or _storage(out / "tune")
    study = optuna.load_study(study_name=settings.get("study_name", "graftcv"), storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    top = sorted(complete, key=lambda t: (-t.value, t.user_attrs.get("val_log_loss") or 0.0))[:ENSEMBLE_MEMBERS]
    members = [Path(t.user_attrs["run_dir"]) for t in top if (Path(t.user_attrs["run_dir"]) / "summary.json").is_file()]
    fields = {k: v for k, v in settings.items() if k in TrainConfig.field_names()}  # not tune's own options
    splits, _ = trial_splits(data, {"progress": False} | fields)
    chosen, best_val = out / "tune", tuned.summary.get("val_accuracy")
    if len(members) >= 2:
        combined = ensemble(members, out / "ensemble", weights="learned", overwrite=True)
        if (combined.summary.get("val_accuracy") or 0) > (best_val or 0):
            chosen, best_val = out / "ensemble", combined.summary["val_accuracy"]
        log.info("ensemble of the top %d trials: val accuracy %.4f (best trial %.4f)", len(members),
                 combined.summary.get("val_accuracy"), tuned.summary.get("val_accuracy"))  # fmt: skip
    from graftcv.tuning.results import copy_run

    copy_run(chosen, out)
    _choose_tta(out)
    model, run_dir = load(out / "model"), RunDir(out)
    summary = (run_dir.summary() or {}) | {"preset_choice": chosen.name, "tune": tuned.summary.get("tune")}
    report = score_test(model, splits, run_dir)
    if report is not None:
        summary |= {f"test_{k}": report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")}
        summary["n_test"] = len(splits.test)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    run_dir.write_summary(summary)
    return Run(out_dir=out, model=model, summary=summary, config=run_dir.config() or {})


def _storage(directory: Path) -> str:
    return f"sqlite:///{(directory / 'study.db').resolve()}"


def _rescore_test(run_dir: Path) -> None:
    """The run's test split scored again by its model as it now predicts (with the TTA it chose)."""
    from graftcv.data import ImageSet
    from graftcv.evaluation.outputs import headline

    rows = RunDir(run_dir).predictions("test")
    if not rows:
        return
    model = load(run_dir / "model")
    images = ImageSet([Path(r["path"]) for r in rows], [r["label"] for r in rows])
    probs, _ = model.predict_proba([str(p) for p in images.paths])
    report = classification_report(np.array(images.targets(model.classes)), probs, model.classes)
    RunDir(run_dir).write_evaluation("test", report, images, probs, model.classes)
    summary = RunDir(run_dir).summary() or {}
    RunDir(run_dir).write_summary(summary | {f"test_{k}": v for k, v in headline(report).items()})


def _choose_tta(run_dir: Path) -> bool:
    """Flip TTA stored in the model (its default at predict time) when it does not lower validation accuracy."""
    rows = RunDir(run_dir).predictions("val")
    model = load(run_dir / "model")
    if not rows or model.tasks is not None:
        return False
    paths, labels = [r["path"] for r in rows], [r["label"] for r in rows]
    truth = np.array([model.classes.index(label) for label in labels])
    plain = np.array([[float(r[c]) for c in model.classes] for r in rows])
    flipped, _ = load(run_dir / "model", tta="flip").predict_proba(paths)
    before = classification_report(truth, plain, model.classes)["accuracy"]
    after = classification_report(truth, flipped, model.classes)["accuracy"]
    log.info("flip TTA on validation: accuracy %.4f → %.4f", before, after)
    if after >= before:
        update_meta(run_dir / "model", tta="flip")
        summary = RunDir(run_dir).summary() or {}
        RunDir(run_dir).write_summary(summary | {"tta": "flip", "val_accuracy_tta": after})
        return True
    return False
