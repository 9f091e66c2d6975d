"""`compare`: every strategy under one protocol on the same images, backbone and preprocessing, through `fit`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from graftcv.atomic import write_text
from graftcv.compare.cells import Runner, make_cells
from graftcv.compare.outputs import write_outputs, write_splits
from graftcv.compare.protocol import (
    SCRATCH,
    build_splits,
    check_strategies,
    check_tune,
    content_groups,
    parse_list,
    parse_shots,
    pooled_data,
    scratch_recipe,
    strategy_settings,
    variant,
)
from graftcv.compare.stats import Comparison, aggregate, score_keys, transfer_verdicts
from graftcv.config import parse_duration
from graftcv.errors import GraftcvError
from graftcv.fitting import fit as default_fit
from graftcv.rundir import data_name, default_run_dir
from graftcv.strategies import STRATEGIES
from graftcv.tracking import parent_run

log = logging.getLogger("graftcv")
# compare decides these for every run itself; passing them as fit settings is an error.
CONTROLLED = {"strategy", "val", "test", "val_fraction", "max_time", "budget", "seed"}
PROTOCOL = "protocol.json"
SPLITS = "splits.json"


def compare(
    data: str | Path,
    strategies: str | Iterable[str] = ("prototype", "linear-probe", "finetune", SCRATCH),
    folds: int | None = None,
    repeats: int | None = None,
    shots: str | Iterable | None = None,
    budget: str | None = None,
    tune: str | Iterable[str] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    scratch_epochs: int = STRATEGIES[SCRATCH].epochs,
    keep_models: bool = False,
    resume: bool = False,
    fit: Callable | None = None,
    **settings,
) -> Comparison:
    """Every strategy under one protocol on the same images, backbone and preprocessing, through `fit`.

    Protocol: stratified `folds`-fold CV (default 5) or `repeats` stratified splits holding out
    `test_fraction`; in each, a stratified `val_fraction` of the training part is the validation set (early
    stopping, choices) and `shots` are class-balanced training subsets. `settings` are `fit`'s (model, size,
    epochs, ...), shared by every strategy; `scratch` is the same model with random weights and its own
    recipe (the registry's), trained for `scratch_epochs`. `budget` (e.g. '30m') stops launching runs once
    spent. `fit` is for tests: default `graftcv.fitting.fit`.
    """
    strategy_names = check_strategies(parse_list(strategies))
    tune_names = check_tune(parse_list(tune))
    clash = sorted(CONTROLLED & set(settings))
    if clash:
        raise GraftcvError(f"compare sets {', '.join(clash)} itself: use its own options instead.")
    if scratch_epochs < 1:
        raise GraftcvError("--scratch-epochs must be at least 1.")
    budget_time = parse_duration(budget, "--budget")
    levels = parse_shots(shots)
    images, tasks = pooled_data(data, bool(settings.get("multi_label")))
    scores = score_keys(tasks)
    if tasks is not None:
        strategy_names = one_label_strategies_dropped(strategy_names)
    groups = content_groups(images)  # byte-identical files stay on one side of every split
    targets = None if tasks is None else tasks.targets(images.labels)
    splits = build_splits(
        images.labels, folds, repeats, levels, seed, val_fraction, test_fraction, groups=groups, targets=targets
    )

    source = str(data) if "://" in str(data) else str(Path(data).resolve())
    out_dir = Path(out) if out else default_run_dir("compare", data_name(data))
    protocol = {
        "data": source,
        "mode": "repeated stratified splits" if repeats is not None else "stratified k-fold",
        "splits": len(splits),
        "test_fraction": test_fraction if repeats is not None else 1 / len(splits),
        "val_fraction": val_fraction,
        "shots": levels,
        "seed": seed,
        "images": len(images),
        "class_counts": images.counts(),
        "tasks": None if tasks is None else tasks.as_meta(),
        "headline": scores[0],
        "identical_files": len(groups) - len(set(groups)),
        "strategies": strategy_names,
        "tune": tune_names,
        "scratch_recipe": scratch_recipe(scratch_epochs),
    }
    _claim(out_dir, protocol, settings, resume)
    splits_file = write_splits(out_dir / SPLITS, images, splits)
    common = {"progress": False} | settings
    runner = Runner(fit or default_fit, seed, tune_names, budget_time, keep_models, resume, scores)
    cells = make_cells(images, splits, levels, strategy_names, source, out_dir, tasks)
    with parent_run(common, f"compare {out_dir.name}") as common:  # --logger mlflow: the cells nest under one run
        rows, missing = runner.run_all(cells, lambda name: strategy_settings(name, common, scratch_epochs))
    comparison = Comparison(
        out_dir,
        rows,
        aggregate(rows, scores),
        transfer_verdicts(rows, scores[0]),
        missing,
        protocol,
        _public(settings, budget),
        scores=scores,
    )
    comparison.files = {"splits": splits_file} | write_outputs(comparison)
    return comparison


def one_label_strategies_dropped(names: list[str]) -> list[str]:
    """With several labels per image, prototype (each image's one nearest class) leaves the rows, said once."""
    kept = [name for name in names if variant(name)[0] != "prototype"]
    if not kept:
        raise GraftcvError("prototype takes one label per image: compare linear-probe or a gradient strategy.")
    if len(kept) < len(names):
        log.warning("prototype gives each image one class: left out of a comparison with several labels per image.")
    return kept


def _public(settings: dict, budget: str | None) -> dict:
    return {k: v for k, v in settings.items() if k != "progress"} | {"budget": budget}


def _claim(out_dir: Path, protocol: dict, settings: dict, resume: bool) -> None:
    """Refuse to mix runs of a different protocol into an existing directory."""
    marker = out_dir / PROTOCOL
    record = {"protocol": protocol, "settings": _public(settings, None)}
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    if marker.exists():
        if not resume:
            raise GraftcvError(f"{out_dir} already holds a comparison: choose another --out, or pass --resume.")
        if marker.read_text() != text:
            raise GraftcvError(f"{out_dir} holds a comparison with other data or settings: it cannot be resumed.")
    write_text(marker, text)
