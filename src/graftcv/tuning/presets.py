"""`train --preset fast|balanced|best`: documented bundles of strategy, size, epochs, ensemble and TTA that choose
within a time budget."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftcv.artifact import update_meta
from graftcv.bagging import MEMBERS_DIR, SPLIT_SETTINGS
from graftcv.catalog import WEIGHT_PACKAGES, hub_cached, package_installed
from graftcv.config import TrainConfig, parse_duration
from graftcv.data import DataSplits
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.model import load
from graftcv.outcomes import Run
from graftcv.rundir import RunDir
from graftcv.training.budget import budgets_count_from_fit, format_seconds

log = logging.getLogger("graftcv")
ENSEMBLE_MEMBERS = 3  # best's ensemble
# best: the budget's share kept for after the members: scoring their ensemble, checking flip TTA on validation and
# scoring test with it (about 1/8 of the 20-minute runs on flowers5, bench/RESULTS.md issue 21)
FINISH_SHARE = 0.12


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
        Preset("best", "EfficientNet-Lite0/1/2 (or --model under 3 seeds), each fine-tuned in a third of --budget "
               "(default 20m), then their equal-weight ensemble and flip TTA, each kept when validation does "
               "not drop", {}, "20m"),
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
    from graftcv.ensembling import ensemble
    from graftcv.fitting import fit, resolve_config
    from graftcv.planning import draw_splits
    from graftcv.tuning.results import copy_run

    seconds = parse_duration(budget, "--budget").total_seconds()
    deadline = started + seconds - FINISH_SHARE * seconds
    config, _ = resolve_config(settings)
    splits = data if isinstance(data, DataSplits) else draw_splits(data, config)  # one split for every member
    fixed = {key: value for key, value in settings.items() if key not in SPLIT_SETTINGS}
    members = _members(settings, config, splits.tasks is not None)
    runs = []
    with budgets_count_from_fit():
        for i, member in enumerate(members):
            left = (deadline - time.monotonic()) / (len(members) - i)
            log.info("best preset: member %d of %d (%s), %s of the budget", i + 1, len(members),
                     member.get("model", config.model), format_seconds(left))  # fmt: skip
            name = str(i) if len(members) == 1 else f"{i}-{member.get('model', config.model)}"
            settings_i = fixed | member | {"budget": f"{max(1, int(left))}s"}
            runs.append(fit(splits, out / MEMBERS_DIR / name, overwrite=True, **settings_i).out_dir)
    chosen = max(runs, key=lambda r: RunDir(r).summary().get("val_accuracy") or 0.0)
    if len(runs) >= 2:
        combined = ensemble(runs, out / "ensemble", weights="equal", overwrite=True)
        best_member = RunDir(chosen).summary().get("val_accuracy") or 0.0
        log.info("equal-weight ensemble of %d members: val accuracy %.4f (best member %.4f)", len(runs),
                 combined.summary.get("val_accuracy") or 0.0, best_member)  # fmt: skip
        if (combined.summary.get("val_accuracy") or 0.0) >= best_member:
            chosen = out / "ensemble"
    copy_run(chosen, out)
    if _choose_tta(out):
        _rescore_test(out)
    summary = (RunDir(out).summary() or {}) | {
        "preset_choice": "ensemble" if chosen == out / "ensemble" else chosen.name,
        "preset_members": [str(r) for r in runs],
        "model_dir": str(out / "model"),  # not the copied run's own
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    RunDir(out).write_summary(summary)
    return Run(out_dir=out, model=load(out / "model"), summary=summary, config=RunDir(out).config() or {})


def _members(settings: dict, config: TrainConfig, several_labels: bool) -> list[dict]:
    """The best preset's members: without --model, each EfficientNet-Lite whose weights are here (one network
    of each size: heterogeneous members disagree most usefully); with --model, that model under three seeds.
    Ensembles take single-label models, so several labels per image get one member."""
    if several_labels:
        return [{}]
    if "model" not in settings and config.pretrained and "weights" not in settings:
        family = [name for name in WEIGHT_PACKAGES if package_installed(name) or hub_cached(name)]
        if len(family) >= 2:
            return [{"model": name} for name in family[:ENSEMBLE_MEMBERS]]
    return [{"seed": config.seed + i} for i in range(ENSEMBLE_MEMBERS)]


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
