"""`train --bagging K`: K members trained on bootstrap samples of one training split, averaged as one ensemble."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from graftcv.data import DataSplits, ImageSet
from graftcv.ensembling import ensemble
from graftcv.errors import GraftcvError
from graftcv.fitting import fit, resolve_config
from graftcv.outcomes import Run
from graftcv.planning import draw_splits
from graftcv.rundir import RunDir
from graftcv.training.budget import budgets_count_from_fit

log = logging.getLogger("graftcv")
MEMBERS_DIR = "members"
SPLIT_SETTINGS = ("val", "test", "val_fraction")  # used once, by the one draw of the splits


def bootstrap(images: ImageSet, seed: int) -> ImageSet:
    """A sample with replacement of the same size, drawn within each class (every class keeps its count)."""
    rng = np.random.default_rng(seed)
    labels = np.array(images.labels)
    chosen = [
        int(i)
        for name in sorted(set(images.labels))
        for i in rng.choice(np.flatnonzero(labels == name), (labels == name).sum())
    ]
    return images.subset(sorted(chosen))


def bag(data, k: int, out: str | Path, overwrite: bool = False, **settings) -> Run:
    """Train `k` members (seeds seed, seed+1, ...) on bootstrap samples of the training split, each a run under
    OUT/members/I, and save their equal-weight ensemble as OUT's model, scored on the shared validation and test."""
    started = time.perf_counter()
    if k < 2:
        raise GraftcvError("--bagging needs at least 2 members.")
    if out is None:
        raise GraftcvError("--bagging needs --out: its run directory.")
    out = Path(out)
    if RunDir(out).finished() and not overwrite:
        raise GraftcvError(f"{out} already holds a finished run: choose another --out, or pass --overwrite.")
    config, strategy = resolve_config(settings)
    splits = data if isinstance(data, DataSplits) else draw_splits(data, config)
    if splits.tasks is not None:
        raise GraftcvError("--bagging ensembles single-label members: leave it off for several labels per image.")
    if splits.train.stream is not None:
        raise GraftcvError("--bagging draws images by index; shards stream them: train on a folder or CSV.")
    member_settings = {key: value for key, value in settings.items() if key not in SPLIT_SETTINGS}
    members = []
    with budgets_count_from_fit():  # each member gets the whole --budget
        for i in range(k):
            log.info("bagging: member %d of %d", i + 1, k)
            sample = bootstrap(splits.train, config.seed + i)
            drawn = DataSplits.from_sets(sample, splits.val, splits.test, source=splits.source or str(data))
            member = out / MEMBERS_DIR / str(i)
            members.append(fit(drawn, member, overwrite=True, **(member_settings | {"seed": config.seed + i})).out_dir)
    run = ensemble(members, out, weights="equal", overwrite=True)
    summary = run.summary | {"strategy": f"bagging ({strategy.name})", "bagging": k}
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    RunDir(out).write_summary(summary)
    return Run(out_dir=run.out_dir, model=run.model, summary=summary, config=run.config)
