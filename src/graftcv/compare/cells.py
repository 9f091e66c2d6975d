"""One strategy on one split at one shot level: the cells, and the runner that fits them within the budget."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from graftcv.atomic import write_json
from graftcv.compare.protocol import Split, level_words, tuning_grid
from graftcv.compare.stats import SINGLE_LABEL_SCORES, score_name
from graftcv.data import DataSplits, ImageSet
from graftcv.data.tasks import Layout

log = logging.getLogger("graftcv")

REACHED = 0.95  # "converged": the first epoch at 95% of the final validation accuracy
CELL = "cell.json"  # a finished cell's row; its presence means the cell is done


def reach_point(history: list[dict], final: float, fraction: float = REACHED) -> tuple[int, float | None]:
    """(epochs, seconds) until validation accuracy first reached `fraction` of `final`; (0, None) without
    epochs (closed-form strategies), and the whole run when no epoch got there."""
    if not history:
        return 0, None
    for row in history:
        if row.get("val_acc") is not None and float(row["val_acc"]) >= fraction * final - 1e-9:
            return int(row["epoch"]), float(row["seconds"])
    return int(history[-1]["epoch"]), float(history[-1]["seconds"])


def row_from_run(run, test_metrics: dict, scores: tuple[str, ...] = SINGLE_LABEL_SCORES) -> dict:
    """A cell's measurements from its run and the test metrics (a report's headline) of the model chosen.
    With several labels per image the epochs' val_acc (right yes/no decisions) measures convergence, and the
    validation headline (mAP or the tasks' mean score) is `val_score`."""
    summary = run.summary
    several = scores != SINGLE_LABEL_SCORES
    decisions = [float(row["val_acc"]) for row in run.history if row.get("val_acc") is not None]
    final = (max(decisions) if decisions else 0.0) if several else summary["val_accuracy"]
    epochs, seconds = reach_point(run.history, final)
    history = [{k: row.get(k) for k in ("phase", "epoch", "val_acc", "seconds")} for row in run.history]
    validation = (
        {"val_score": summary[f"val_{scores[0].removeprefix('test_')}"]}
        if several
        else {"val_accuracy": summary["val_accuracy"]}
    )
    return {
        **{key: test_metrics[key.removeprefix("test_")] for key in scores},
        **validation,
        "train_seconds": summary["train_seconds"],
        "epochs": summary["epochs"],
        "epochs_to_95": epochs,
        "seconds_to_95": summary["train_seconds"] if seconds is None else seconds,
        "history": history,
        "out_dir": str(run.out_dir),
    }


@dataclass
class Cell:
    """One strategy on one split at one shot level, with the images it trains, chooses and is scored on."""

    strategy: str
    level: str
    split: Split
    train: ImageSet
    val: ImageSet
    test: ImageSet
    source: str
    run_dir: Path
    tasks: Layout | None = None  # several labels per image

    @property
    def images_per_class(self) -> float:
        return len(self.train) / len(self.train.counts())

    def key(self) -> dict:
        return {"strategy": self.strategy, "shots": self.level, "split": self.split.index}


def make_cells(
    images: ImageSet,
    splits: list[Split],
    levels: list[str],
    strategies: list[str],
    data: str,
    out_dir: Path,
    tasks: Layout | None = None,
) -> list[Cell]:
    """Split by split, so that a budget that ends early leaves whole splits that compare every strategy."""
    cells = []
    for split in splits:
        val, test = images.subset(split.val.tolist()), images.subset(split.test.tolist())
        for level in levels:
            train = images.subset(split.subsets[level].tolist())
            source = f"{data} (compare: split {split.index}, {level_words(level)})"
            for strategy in strategies:
                run_dir = out_dir / "runs" / f"split-{split.index}" / f"shots-{level}" / strategy
                cells.append(Cell(strategy, level, split, train, val, test, source, run_dir, tasks))
    return cells


class Runner:
    """Runs cells through `fit` within the budget and keeps what it learned."""

    def __init__(
        self,
        fit: Callable,
        seed: int,
        tune: list[str],
        budget: timedelta | None,
        keep_models: bool,
        resume: bool,
        scores: tuple[str, ...] = SINGLE_LABEL_SCORES,
    ) -> None:
        self.fit, self.seed, self.tune, self.scores = fit, seed, tune, scores
        self.budget_seconds = budget.total_seconds() if budget else None
        self.keep_models, self.resume = keep_models, resume
        self.started = time.perf_counter()

    def remaining(self) -> float | None:
        if self.budget_seconds is None:
            return None
        return self.budget_seconds - (time.perf_counter() - self.started)

    def spent(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def finished(self, cell: Cell) -> bool:
        return self.resume and (cell.run_dir / CELL).exists()

    def _fit(self, cell: Cell, settings: dict, out: Path, test: ImageSet | None):
        left = self.remaining()
        if left is not None:  # the last run stops cleanly (best weights kept) when the budget ends
            settings = settings | {"max_time": f"{max(left, 1.0):.0f}s"}
        return self.fit(
            DataSplits.from_sets(cell.train, cell.val, test, source=cell.source, tasks=cell.tasks),
            out=out,
            overwrite=True,
            seed=self.seed + cell.split.index,
            **{k: v for k, v in settings.items() if k != "seed"},
        )

    def _drop_model(self, run) -> None:
        if not self.keep_models:
            shutil.rmtree(Path(run.out_dir) / "model", ignore_errors=True)

    def run(self, cell: Cell, settings: dict) -> dict:
        """The cell's row: fitted once, or tuned (nested) and the chosen candidate scored; cell.json records it."""
        done = cell.run_dir / CELL
        if self.finished(cell):
            return json.loads(done.read_text())
        grid = tuning_grid(cell.strategy, self.tune, settings) if self.tune else []
        if not grid:
            run = self._fit(cell, settings, cell.run_dir, cell.test)
            test = {key.removeprefix("test_"): run.summary[key] for key in self.scores}
            row = row_from_run(run, test, self.scores) | {"chosen": {}, "tune_runs": 0, "tune_seconds": 0.0}
            self._drop_model(run)
        else:
            row = self._tuned(cell, settings, grid)
        row = cell.key() | {"images_per_class": cell.images_per_class} | row
        write_json(done, row)
        return row

    def _tuned(self, cell: Cell, settings: dict, grid: list[dict]) -> dict:
        # Nested: every candidate sees only the outer training part (train + val, no test) and is chosen on
        # the validation headline; the outer test fold is read once, by the chosen model, afterwards.
        key = "val_" + self.scores[0].removeprefix("test_")
        best, tried, tune_seconds = None, [], 0.0
        for number, candidate in enumerate(grid):
            run = self._fit(cell, settings | candidate, cell.run_dir / f"tune-{number}", None)
            tried.append(candidate | {key: run.summary[key]})
            tune_seconds += run.summary["train_seconds"]
            if best is None or run.summary[key] > best[1].summary[key]:
                if best is not None:
                    self._drop_model(best[1])
                best = (candidate, run)
            else:
                self._drop_model(run)
        chosen, run = best
        report = run.model.evaluate_images(cell.test)
        test = report.get("headline", report)  # several labels per image: the scores sit under "headline"
        row = row_from_run(run, test, self.scores)
        row |= {"chosen": chosen, "tune_runs": len(grid), "tune_seconds": tune_seconds}
        self._drop_model(run)
        return row | {"candidates": tried}

    def run_all(self, cells: list[Cell], settings_of: Callable[[str], dict]) -> tuple[list[dict], list[dict]]:
        """(rows of the cells run or resumed, keys of those the budget left out)."""
        rows, missing = [], []
        for number, cell in enumerate(cells, start=1):
            if self.spent() and not self.finished(cell):
                missing.append(cell.key())
                continue
            row = self.run(cell, settings_of(cell.strategy))
            rows.append(row)
            log.info(
                "[%d/%d] %s · %s · split %d: test %s %.3f (%.0f s)",
                number,
                len(cells),
                cell.strategy,
                level_words(cell.level),
                cell.split.index,
                score_name(self.scores[0]),
                row[self.scores[0]],
                row["train_seconds"],
            )
        return rows, missing
