"""`train --snapshots K`: a snapshot ensemble of each cycle's end and a greedy soup of the best epochs, each saved and
evaluated as a model of its own beside the run's best single epoch."""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from graftcv.artifact import Classifier, save_artifact, save_ensemble, update_meta
from graftcv.config import TrainConfig
from graftcv.data import DataSplits, ImageSet
from graftcv.ensembles import Ensemble, MemberInput, negative_log_likelihood
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.evaluation.outputs import headline
from graftcv.model import Model, load
from graftcv.planning import Prepared
from graftcv.rundir import RunDir
from graftcv.strategies import Strategy
from graftcv.training.phase import Phase, with_cycles

log = logging.getLogger("graftcv")
SNAPSHOTS_DIR = "snapshots"  # OUT/snapshots/{ensemble,soup}: run directories of their own


def snapshot_plan(config: TrainConfig, strategy: Strategy, splits: DataSplits, phases: list[Phase]) -> list[Phase]:
    """The strategy's phases with the last image phase run as --snapshots cycles, or one sentence why not."""
    if strategy.closed_form or all(p.on_features for p in phases):
        raise GraftcvError(
            f"--snapshots cycles a phase trained on images; {strategy.name} has none: use finetune, head or partial."
        )
    if splits.tasks is not None:
        raise GraftcvError("--snapshots ensembles single-label members: leave it off for several labels per image.")
    return with_cycles(phases, config.snapshots)


def average_states(states: list[dict]) -> dict:
    """The mean of same-shaped state dicts; integer buffers (BatchNorm's step count) are the first one's."""
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
        for k, v in states[0].items()
    }


def greedy_soup(
    network: Classifier, meta: dict, states: list[dict], val_images: ImageSet, names: list[str], scores=None
) -> tuple[dict, list[int]]:
    """Greedy soup (Wortsman et al., 2022): weights averaged best first (by validation accuracy, `scores` when
    known), each ingredient kept only when the averaged network's validation accuracy does not drop. Returns the
    averaged state and the indices kept; `network` ends holding the soup."""
    classes, paths = list(meta["classes"]), [str(p) for p in val_images.paths]
    truth = np.array(val_images.targets(classes))

    def accuracy(state: dict) -> float:
        network.backbone.load_state_dict(state)
        probs, _ = Model(network, meta).predict_proba(paths)
        return float((probs.argmax(1) == truth).mean())

    scores = list(scores) if scores is not None else [accuracy(state) for state in states]
    order = sorted(range(len(states)), key=lambda i: -scores[i])
    kept, best = [order[0]], scores[order[0]]
    for i in order[1:]:
        score = accuracy(average_states([states[j] for j in [*kept, i]]))
        log.info("soup: with %s, val accuracy %.4f (so far %.4f)", names[i], score, best)
        if score >= best:
            kept, best = [*kept, i], score
    averaged = average_states([states[j] for j in kept])
    network.backbone.load_state_dict(averaged)
    return averaged, kept


def save_snapshot_models(prep: Prepared, trained, model: Model, run_dir: RunDir, final: Path, reports: dict) -> dict:
    """OUT/snapshots/ensemble (equal weights over the cycles' ends) and OUT/snapshots/soup, each scored on
    validation and test by running its saved artifact; the rows for summary.json, the best epoch's first."""
    states, splits, meta = trained.snapshots, prep.splits, model.meta
    val_truth = np.array(splits.val.targets(splits.classes))
    rows = {"best_epoch": {"epoch": trained.best_epoch, **_prefixed(reports)}}
    stale = ("weights_sha256", "onnx", "metrics", "format_version", "kind")  # the best epoch's, not a variant's
    base = {k: v for k, v in meta.items() if k not in stale} | {"created": datetime.now().isoformat(timespec="seconds")}
    ends = states.cycle_ends
    if len(ends) >= 2:
        members = [_with_state(model.network, e["state"]) for e in ends]
        same_input = [MemberInput(meta["data_config"], meta["data_config"]) for _ in ends]
        network = Ensemble(members, same_input, [1 / len(ends)] * len(ends))
        ens_meta = base | {"backbone": f"snapshots({meta['backbone']}x{len(ends)})", "strategy": "ensemble",
                           "head": None, "weighting": "equal"}  # fmt: skip
        save_ensemble(run_dir.path / SNAPSHOTS_DIR / "ensemble" / "model", network, ens_meta, [meta] * len(ends))
        member_losses = [negative_log_likelihood(e["val_probs"].numpy().astype(np.float64), val_truth) for e in ends]
        rows["ensemble"] = {
            "epochs": [e["epoch"] for e in ends],
            "member_val_log_loss": [round(v, 4) for v in member_losses],
            **_evaluate(run_dir, "ensemble", splits, final, prep.record),
        }
    else:
        log.warning("Only %d cycle finished within the budget: no snapshot ensemble.", len(ends))
    ingredients = states.best
    if ingredients:
        scores = [float((e["val_probs"].numpy().argmax(1) == val_truth).mean()) for e in ingredients]
        soup = _with_state(model.network, ingredients[0]["state"])
        names = [f"epoch {e['epoch']}" for e in ingredients]
        _, kept = greedy_soup(soup, meta, [e["state"] for e in ingredients], splits.val, names, scores)
        save_artifact(run_dir.path / SNAPSHOTS_DIR / "soup" / "model", soup.backbone, base | {"weighting": "soup"})
        rows["soup"] = {
            "epochs": sorted(ingredients[i]["epoch"] for i in kept),
            "candidates": sorted(e["epoch"] for e in ingredients),
            **_evaluate(run_dir, "soup", splits, final, prep.record),
        }
    for name, row in rows.items():
        log.info("%s: val accuracy %s, test accuracy %s", name, row.get("val_accuracy"), row.get("test_accuracy", "–"))
    return rows


def _prefixed(reports: dict) -> dict:
    return {f"{split}_{k}": v for split, report in reports.items() if report for k, v in headline(report).items()}


def _with_state(network: Classifier, state: dict) -> Classifier:
    copied = copy.deepcopy(network)
    copied.backbone.load_state_dict(state)
    return copied


def _evaluate(run_dir: RunDir, name: str, splits: DataSplits, final: Path, record: dict) -> dict:
    """The saved model of OUT/snapshots/NAME on validation and test; its evaluation, config and summary written
    there, so `evaluate`, `predict`, `serve` and `ensemble` take that directory like any run's."""
    variant = RunDir(run_dir.path / SNAPSHOTS_DIR / name)
    model, reports = load(variant.model), {}
    for split in ("val", "test"):
        images = getattr(splits, split)
        if images is None or not len(images) or images.stream is not None:
            continue
        probs, _ = model.predict_proba([str(p) for p in images.paths], progress=False)
        reports[split] = classification_report(np.array(images.targets(splits.classes)), probs, splits.classes)
        variant.write_evaluation(split, reports[split], images, probs, splits.classes)
    found = _prefixed(reports)
    if "val" in reports:
        update_meta(variant.model, metrics=headline(reports["val"]))
    variant.write_config({k: record.get(k) for k in ("data", "data_summary", "seed", "model", "snapshots")})
    variant.write_summary({
        "strategy": f"snapshot {name}", "model": model.meta["backbone"], "classes": splits.classes, **found,
        "model_dir": str(final / SNAPSHOTS_DIR / name / "model"),
    })  # fmt: skip
    return found
