"""Self-training for domain adaptation: rounds of confident, class-balanced pseudo-labels on the target images,
each round a plain `fit` on the source plus the pseudo-labelled target, until the labels stop changing or the
last round, whose fit is the run. Each fit gets the whole `--budget`/`--epochs` (a share of a budget is too short
for a fit's fixed costs): self-training costs up to ROUNDS + 1 runs of source-only."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from graftcv.config import TrainConfig
from graftcv.data import DataSplits, ImageSet, discover, read_labelled
from graftcv.fitting import fit
from graftcv.outcomes import Run
from graftcv.training.budget import budgets_count_from_fit

log = logging.getLogger("graftcv")
ROUNDS = 2  # pseudo-labelling rounds after the source-only model; the last one trains into the run directory
THRESHOLD = 0.8  # a target image is pseudo-labelled only above this probability


def select(probs: np.ndarray, round_index: int, rounds: int, threshold: float = THRESHOLD) -> dict[int, int]:
    """Image index → pseudo class: per class, the most confident predictions above `threshold`, at most
    round/rounds of an even share of the target set (curriculum: the surest first, more each round)."""
    predicted, confidence = probs.argmax(1), probs.max(1)
    share = int(round(len(probs) / probs.shape[1] * round_index / rounds))
    chosen = {}
    for c in range(probs.shape[1]):
        members = np.flatnonzero((predicted == c) & (confidence >= threshold))
        for i in members[np.argsort(-confidence[members])][:share]:
            chosen[int(i)] = c
    return chosen


def self_train(source, target_paths: list[Path], out, target_labels=None, rounds: int = ROUNDS,
               **settings) -> tuple[Run, list[dict]]:  # fmt: skip
    """The final run (in `out`, on the source plus the last pseudo-labels) and, per round, how many target
    images were pseudo-labelled (and with target labels, how many correctly)."""
    seed = settings.get("seed", TrainConfig.seed)
    splits = discover(source, settings.pop("val", None), settings.pop("test", None),
                      settings.get("val_fraction", TrainConfig.val_fraction), seed)  # fmt: skip
    truth = None
    if target_labels is not None:
        known, _ = read_labelled(target_labels)
        truth = {p.resolve(): label for p, label in zip(known.paths, known.labels, strict=True)}
    work = Path(tempfile.mkdtemp(prefix="graftcv-self-training-"))
    history: list[dict] = []
    pseudo: dict[int, int] = {}

    def splits_with(pseudo: dict[int, int]) -> DataSplits:
        train = ImageSet(
            splits.train.paths + [target_paths[i] for i in pseudo],
            splits.train.labels + [splits.classes[c] for c in pseudo.values()],
        )
        return DataSplits.from_sets(train, splits.val, splits.test, source=str(source))

    quiet = settings | {"progress": False}
    try:
        with budgets_count_from_fit():
            run = fit(splits_with(pseudo), out=work / "round0", **quiet)  # the source-only model labels first
            for index in range(1, rounds + 1):
                if run.model is None:  # another rank of a multi-process run: rank 0 labels
                    return run, history
                probs, _ = run.model.predict_proba([str(p) for p in target_paths])
                chosen = select(probs, index, rounds)
                row = {"round": index, "pseudo_labelled": len(chosen)}
                if truth is not None:
                    row["correct"] = sum(
                        truth.get(Path(target_paths[i]).resolve()) == splits.classes[c] for i, c in chosen.items()
                    )
                history.append(row)
                log.info("self-training round %d: %s", index, row)
                final = index == rounds or chosen == pseudo  # the last round, or the labels stopped changing
                pseudo = chosen
                where = out if final else work / f"round{index}"
                run = fit(splits_with(pseudo), out=where, **(settings if final else quiet))
                if final:
                    break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return run, history
