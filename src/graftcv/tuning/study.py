"""`tune`: an Optuna study over training settings, trials pruned on their validation loss, stored in SQLite (or any
database Optuna takes) so a killed tune resumes and several processes share one study."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from graftcv.config import parse_duration
from graftcv.data import DataSplits
from graftcv.errors import GraftcvError
from graftcv.evaluation.outputs import headline_metric
from graftcv.fitting import fit, resolve_config
from graftcv.planning import draw_splits
from graftcv.tracking import parent_run
from graftcv.training.callbacks import listening
from graftcv.tuning.results import STUDY_FILE, TRIALS, finish
from graftcv.tuning.space import Space, read_space

log = logging.getLogger("graftcv")
SAMPLERS = ("tpe", "random", "grid")
FAILURES_BEFORE_STOP = 3  # failed trials, with none finished, that end the study
SPLIT_SETTINGS = ("val", "test", "val_fraction")  # consumed by the one draw of the splits, not given to trials
MIN_TRIAL_SECONDS = 15  # a trial with less time left than this is not started
TPE_STARTUP_TRIALS = 5  # random trials before TPE models the good region (a CPU study runs few trials)


def make_sampler(kind: str, space: Space, seed: int):
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":  # ranges contribute their ends and their (geometric, for log) middle
        grid = {}
        for p in space.params:
            if p.kind == "categorical":
                grid[p.name] = list(p.choices)
            else:
                middle = (p.low * p.high) ** 0.5 if p.log else (p.low + p.high) / 2
                grid[p.name] = sorted({p.low, round(middle) if p.kind == "int" else middle, p.high})
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise GraftcvError(f"Unknown --sampler {kind!r}: choose one of {', '.join(SAMPLERS)}.")


def open_study(storage: str, name: str, sampler, heartbeat: float):
    """The study in `storage`, created on first use; trials of a killed process are failed once their heartbeat
    stops, and retried once (Optuna's RetryFailedTrialCallback)."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat options are marked experimental
        try:
            rdb = RDBStorage(
                storage,
                heartbeat_interval=max(1, int(heartbeat)),
                grace_period=max(2, int(2 * heartbeat)),
                failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
                engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None,
            )
        except Exception as error:  # SQLAlchemy's own errors: an unreachable or malformed URL
            raise GraftcvError(f"Cannot open the study storage {storage}: {str(error).splitlines()[0]}") from None
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    return optuna.create_study(
        storage=rdb, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )


def trial_splits(data, settings: dict) -> tuple[DataSplits, DataSplits]:
    """The data's splits drawn once with the seed (the same in every process), and the trials' view: without test."""
    config, _ = resolve_config({k: v for k, v in settings.items() if k not in ("strategy",)})
    splits = data if isinstance(data, DataSplits) else draw_splits(data, config)
    source = splits.source or str(data)
    return splits, DataSplits.from_sets(splits.train, splits.val, None, source=source, tasks=splits.tasks)


class Reporter:
    """Each epoch's validation loss to the trial (negated: the study maximises), and pruning when Optuna says so."""

    def __init__(self, trial) -> None:
        self.trial, self.step = trial, 0

    def __call__(self, metrics: dict) -> None:
        import optuna

        if "val_loss" not in metrics:
            return
        self.step += 1
        self.trial.report(-metrics["val_loss"], self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"val_loss {metrics['val_loss']:.4f} at epoch {self.step}")


def headline_key(splits: DataSplits) -> str:
    return headline_metric(splits.tasks)


def objective(space: Space, fixed: dict, splits: DataSplits, out: Path, deadline: float | None):
    """One trial: its settings from the space, a fit without the test split under OUT/trials/NNNN, its
    validation headline (accuracy; macro mAP for multi-label data; the tasks' mean score for several) as the value."""
    import optuna

    key = headline_key(splits)
    failures: list[str] = []

    def run_trial(trial) -> float:
        settings = fixed | space.settings(trial, fixed.get("strategy"))
        for earlier in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if earlier.params == trial.params:  # a sampler may draw a finished combination again: not retrained
                trial.set_user_attr("duplicate_of", earlier.number)
                for name in ("run_dir", "seconds", "val_log_loss"):
                    trial.set_user_attr(name, earlier.user_attrs.get(name))
                return float(earlier.value)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < MIN_TRIAL_SECONDS:
            trial.study.stop()
            raise optuna.TrialPruned("the budget is spent")
        if left is not None:
            settings["max_time"] = f"{int(left)}s"
        directory = out / TRIALS / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(directory.resolve()))
        started = time.perf_counter()
        try:
            with listening(Reporter(trial)):
                run = fit(splits, directory, overwrite=True, **settings)
        except GraftcvError as error:
            failures.append(str(error))
            trial.set_user_attr("error", str(error)[:500])
            finished = [t for t in trial.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if len(failures) >= FAILURES_BEFORE_STOP and not finished:
                trial.study.stop()  # the same refusal again and again: a setting of the caller's, not of the trial
                raise GraftcvError(f"The first trials all failed; the first said: {failures[0]}") from None
            raise
        seconds = time.perf_counter() - started
        trial.set_user_attr("seconds", round(seconds, 1))
        trial.set_user_attr("val_log_loss", run.summary.get("val_log_loss"))
        value = float(run.summary[f"val_{key}"])
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        left = "" if deadline is None else f", {max(0.0, deadline - time.monotonic()) / 60:.1f} min of the budget left"
        log.info("trial %d: %s → val %s %.4f (%.0f s%s)", trial.number, shown, key, value, seconds, left)
        return value

    return run_trial


def tune(
    data,
    out: str | Path,
    budget: str | None = "30m",
    trials: int | None = None,
    sampler: str = "tpe",
    space: str | Path | None = "default",
    storage: str | None = None,
    study_name: str = "graftcv",
    heartbeat: float = 60.0,
    **settings,
):
    """Search training settings on the validation split within `budget` (and/or up to `trials` finished trials in
    the study), then keep the best trial's model as OUT/model and score it once on the test split.

    `settings` are fixed `TrainConfig` fields for every trial (model, seed, val/test fractions, ...). `storage`
    (an Optuna database URL; default sqlite under OUT) lets a killed tune resume and several processes work on one
    study. Returns the `Run` of the chosen model, whose summary holds the study's figures."""
    import optuna

    if budget is None and trials is None:
        raise GraftcvError("Give --budget, --trials or both: the study needs to know when to stop.")
    if trials is not None and trials < 1:
        raise GraftcvError("--trials must be at least 1.")
    seconds = parse_duration(budget, "--budget").total_seconds() if budget else None
    started = time.monotonic()
    deadline = None if seconds is None else started + seconds
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fixed = {"progress": False} | settings
    search = read_space(space).without(set(settings))  # what the caller fixed is not searched
    splits, for_trials = trial_splits(data, fixed)
    if splits.tasks is not None:  # several labels per image: the study maximises headline_metric (mAP or mean)
        search = search.for_several_labels()
    if splits.test is None or not len(splits.test):
        log.warning(
            "No test split (ROOT/test or --test): the study chooses on validation, so the validation score it reports "
            "is optimistic."
        )
    url = storage or f"sqlite:///{(out / STUDY_FILE).resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(url, study_name, make_sampler(sampler, search, int(fixed.get("seed", 0))), heartbeat)
    if not study.trials:  # a new study starts from what `graftcv train` would do, then a linear probe
        study.enqueue_trial(search.defaults(), skip_if_exists=True)
        if any(p.name == "strategy" and "linear-probe" in p.choices for p in search.params):
            study.enqueue_trial({"strategy": "linear-probe", "head": "logreg"}, skip_if_exists=True)
    done = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    callbacks = [optuna.study.MaxTrialsCallback(trials, states=done)] if trials else []
    if not trials or sum(t.state in done for t in study.trials) < trials:
        with parent_run({k: v for k, v in fixed.items() if k not in SPLIT_SETTINGS}, f"tune {out.name}") as given:
            study.optimize(
                objective(search, given, for_trials, out, deadline),
                timeout=None if deadline is None else max(1.0, deadline - time.monotonic()),
                callbacks=callbacks,
                catch=(GraftcvError,),  # a setting the data or machine refuses: that trial fails, the study goes on
                gc_after_trial=True,
            )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
        if failed and len(failed) >= FAILURES_BEFORE_STOP:
            first = failed[0].user_attrs.get("error", "see the log")
            raise GraftcvError(f"Every trial failed ({len(failed)}); the first said: {first}")
    return finish(study, search, splits, out, fixed, url, budget, time.monotonic() - started)
