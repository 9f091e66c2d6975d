"""Compare strategies under one protocol (k-fold CV or repeated splits, shot subsets, nested tuning) via `fit`."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from graftcv import api
from graftcv.config import parse_duration
from graftcv.data.discovery import SPLIT_ALIASES, ImageSet, read_labelled
from graftcv.errors import GraftcvError
from graftcv.strategies import DEFAULTS, FEATURE_HEAD_STRATEGIES, STRATEGIES

log = logging.getLogger("graftcv")

SCRATCH = "scratch"
ALL = "all"
# From-scratch recipe: the same architecture, random weights, and what random weights need (see README).
# 30 epochs: a random-init network has no features to reuse and is still improving long after the 5-8
# epochs of fine-tuning. lr 3e-3: 10x the fine-tuning LR, which is kept small only to preserve pretrained
# features (one-cycle warms up to it, so it is stable). Strong augmentation: a random-init network memorizes
# a few hundred images quickly. BatchNorm statistics train (frozen ones would be the random init's 0/1), and
# patience 10, because a from-scratch validation curve is noisy for many epochs.
SCRATCH_RECIPE = {
    "strategy": "full",
    "pretrained": False,
    "weights": None,
    "epochs": 30,
    "lr": 3e-3,
    "augment": "strong",
    "bn": "train",
    "patience": 10,
}
GRADIENT_STRATEGIES = tuple(s for s in STRATEGIES if s not in FEATURE_HEAD_STRATEGIES) + (SCRATCH,)
# Nested tuning: which settings each strategy can tune, and the small grid tried around the base value.
TUNABLE = {"lr": GRADIENT_STRATEGIES, "epochs": GRADIENT_STRATEGIES, "unfreeze": ("partial",)}
METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "train_seconds", "epochs_to_95", "seconds_to_95")
CONTROLLED = {"strategy", "val", "test", "val_fraction", "max_time", "seed"}
REACHED = 0.95  # "converged": the first epoch at 95% of the final validation accuracy


@dataclass(frozen=True)
class Split:
    """One outer split, as indices into the pooled images: training pool, validation, held-out test,
    and the class-balanced training subset for every shot level (nested: each K contains every smaller K)."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    subsets: dict[str, np.ndarray]


@dataclass
class Comparison:
    """What `compare` measured: one row per run, the aggregated table, the verdicts and what is missing."""

    out_dir: Path
    rows: list[dict]
    table: list[dict]
    verdicts: list[dict]
    missing: list[dict]
    protocol: dict
    settings: dict
    files: dict[str, Path] = field(default_factory=dict)


# --- input -----------------------------------------------------------------------------------------


def pooled_images(data: str | Path) -> ImageSet:
    """Every labelled image under `data`: train/val/test folders are pooled, because compare draws its own
    folds; otherwise ROOT/CLASS/* or a path,label CSV."""
    root = Path(data).expanduser()
    if not root.exists():
        raise GraftcvError(f"Data path {root} does not exist.")
    sources = [root]
    if root.is_dir():
        children = {child.name.lower(): child for child in root.iterdir() if child.is_dir()}
        if any(alias in children for alias in SPLIT_ALIASES["train"]):
            sources = [children[a] for aliases in SPLIT_ALIASES.values() for a in aliases if a in children]
    pooled = ImageSet()
    for source in sources:
        images, skipped = read_labelled(source)
        api.warn_skipped(skipped)
        pooled.paths.extend(images.paths)
        pooled.labels.extend(images.labels)
    if len(pooled.counts()) < 2:
        raise GraftcvError(f"{data} has only one class: at least two are needed to compare classifiers.")
    return pooled


def parse_shots(text: str | Iterable | None) -> list[str]:
    """'1,2,4,all' → ['1', '2', '4', 'all'] sorted, 'all' last; None → ['all']."""
    if text is None or text == "":
        return [ALL]
    items = [str(t).strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    counts = set()
    for item in items:
        if item == ALL:
            continue
        if not item.isdigit() or int(item) < 1:
            raise GraftcvError(f"--shots takes positive image counts per class or 'all', not {item!r}.")
        counts.add(int(item))
    return [str(k) for k in sorted(counts)] + ([ALL] if ALL in items else [])


def parse_list(text: str | Iterable | None) -> list[str]:
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [str(item).strip() for item in items if str(item).strip()]


# --- protocol --------------------------------------------------------------------------------------


def _stratified(splitter, labels: np.ndarray, what: str):
    try:
        return list(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as error:  # scikit-learn: too few members of a class, or a test set smaller than the classes
        raise GraftcvError(f"Cannot draw the {what}: {str(error).splitlines()[0]}") from None


def build_splits(
    labels: list[str],
    folds: int | None = None,
    repeats: int | None = None,
    shots: list[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> list[Split]:
    """Outer splits (stratified k-fold, or `repeats` stratified shuffle splits), each with a validation set
    drawn from its training part and class-balanced shot subsets drawn from the rest, once per split.

    Everything depends on `seed` and the labels only, never on the strategy, so every strategy sees the
    same training subsets, the same validation images and the same held-out images.
    """
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    smallest = classes[np.argmin(counts)]
    if folds is not None and repeats is not None:
        raise GraftcvError("Choose --folds (k-fold cross-validation) or --repeats (repeated splits), not both.")
    if repeats is not None:
        if repeats < 1:
            raise GraftcvError("--repeats must be at least 1.")
        if not 0.0 < test_fraction < 1.0:
            raise GraftcvError(f"--test-fraction must be between 0 and 1, got {test_fraction}.")
        outer = StratifiedShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=seed)
    else:
        folds = 5 if folds is None else folds
        if folds < 2:
            raise GraftcvError("--folds must be at least 2.")
        if folds > counts.min():
            raise GraftcvError(f"--folds {folds} is more than the {counts.min()} images of class {smallest!r}.")
        outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    if not 0.0 < val_fraction < 1.0:
        raise GraftcvError(f"--val-fraction must be between 0 and 1, got {val_fraction}.")
    levels = shots or [ALL]
    splits = []
    for index, (train_part, test) in enumerate(_stratified(outer, y, "outer splits")):
        inner = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed + index)
        (fit_rows, val_rows), *_ = _stratified(inner, y[train_part], f"validation set of split {index}")
        train, val = train_part[fit_rows], train_part[val_rows]
        subsets = _shot_subsets(y, train, levels, np.random.default_rng([seed, index]), index)
        splits.append(Split(index, np.sort(train), np.sort(val), np.sort(test), subsets))
    return splits


def _shot_subsets(y: np.ndarray, train: np.ndarray, levels: list[str], rng, index: int) -> dict[str, np.ndarray]:
    """K images of each class for every level K: one random order per class, cut at K, so the subsets nest."""
    orders = {c: rng.permutation(train[y[train] == c]) for c in np.unique(y)}
    subsets = {}
    for level in levels:
        if level == ALL:
            subsets[level] = np.sort(train)
            continue
        k = int(level)
        short = [c for c, members in orders.items() if len(members) < k]
        if short:
            have = len(orders[short[0]])
            raise GraftcvError(
                f"--shots {k} needs {k} training images of every class, but class {short[0]!r} has only {have} "
                f"in split {index} after holding out test and validation images."
            )
        subsets[level] = np.sort(np.concatenate([orders[c][:k] for c in sorted(orders)]))
    return subsets


def write_split_csv(path: Path, images: ImageSet, rows: np.ndarray) -> Path:
    """A path,label CSV of the chosen images (absolute paths), the input `fit` reads like any user CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([str(Path(images.paths[i]).resolve()), images.labels[i]] for i in rows)
    return path


def strategy_settings(strategy: str, common: dict, scratch_epochs: int) -> dict:
    """The settings `fit` gets for a strategy: the shared ones, plus the from-scratch recipe for `scratch`."""
    if strategy == SCRATCH:
        return common | SCRATCH_RECIPE | {"epochs": scratch_epochs}
    return common | {"strategy": strategy}


def tuning_grid(strategy: str, tune: list[str], settings: dict) -> list[dict]:
    """The candidates nested tuning tries for one strategy: a product of small grids around the base values
    (the grids of settings this strategy does not use are left out, so probes are never tuned)."""
    base_epochs, base_lr = DEFAULTS.get(settings["strategy"], (1, 1e-3))
    lr = float(settings["lr"]) if isinstance(settings.get("lr"), (int, float)) else base_lr
    epochs = settings.get("epochs") or base_epochs
    values = {
        "lr": [lr / 3, lr, lr * 3],
        "epochs": sorted({max(1, epochs // 2), epochs, epochs * 2}),
        "unfreeze": [1, 2, 4],
    }
    names = [name for name in tune if strategy in TUNABLE[name]]
    if not names:
        return []
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[n] for n in names))]


# --- one cell --------------------------------------------------------------------------------------


def reach_point(history: list[dict], final: float, fraction: float = REACHED) -> tuple[int, float | None]:
    """(epochs, seconds) until validation accuracy first reached `fraction` of `final`; (0, None) without
    epochs (probes), and the whole run when no epoch got there."""
    if not history:
        return 0, None
    for row in history:
        if row.get("val_acc") is not None and float(row["val_acc"]) >= fraction * final - 1e-9:
            return int(row["epoch"]), float(row["seconds"])
    return int(history[-1]["epoch"]), float(history[-1]["seconds"])


def _row_from_run(run, test_metrics: dict) -> dict:
    summary = run.summary
    epochs, seconds = reach_point(run.history, summary["val_accuracy"])
    history = [{k: row.get(k) for k in ("phase", "epoch", "val_acc", "seconds")} for row in run.history]
    return {
        "test_accuracy": test_metrics["accuracy"],
        "test_balanced_accuracy": test_metrics["balanced_accuracy"],
        "test_macro_f1": test_metrics["macro_f1"],
        "val_accuracy": summary["val_accuracy"],
        "train_seconds": summary["train_seconds"],
        "epochs": summary["epochs"],
        "epochs_to_95": epochs,
        "seconds_to_95": summary["train_seconds"] if seconds is None else seconds,
        "history": history,
        "out_dir": str(run.out_dir),
    }


@dataclass
class _Cell:
    """One strategy on one split at one shot level."""

    strategy: str
    level: str
    split: Split
    train_csv: Path
    val_csv: Path
    test_csv: Path
    images_per_class: float
    run_dir: Path

    def key(self) -> dict:
        return {"strategy": self.strategy, "shots": self.level, "split": self.split.index}


class _Runner:
    """Runs cells through `fit` within the budget and keeps what it learned."""

    def __init__(self, fit: Callable, settings: dict, tune: list[str], budget, keep_models: bool, resume: bool):
        self.fit, self.settings, self.tune = fit, settings, tune
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

    def _fit(self, cell: _Cell, settings: dict, out: Path, test: Path | None):
        left = self.remaining()
        if left is not None:  # the last run stops cleanly (best weights kept) when the budget ends
            settings = settings | {"max_time": f"{max(left, 1.0):.0f}s"}
        return self.fit(
            cell.train_csv,
            out=out,
            overwrite=True,
            val=str(cell.val_csv),
            test=str(test) if test else None,
            seed=self.settings.get("seed", 0) + cell.split.index,
            **{k: v for k, v in settings.items() if k != "seed"},
        )

    def _drop_model(self, run) -> None:
        if not self.keep_models:
            shutil.rmtree(Path(run.out_dir) / "model", ignore_errors=True)

    def finished(self, cell: _Cell) -> bool:
        return self.resume and (cell.run_dir / "cell.json").exists()

    def run(self, cell: _Cell, settings: dict) -> dict:
        done = cell.run_dir / "cell.json"
        if self.finished(cell):
            return json.loads(done.read_text())
        grid = tuning_grid(cell.strategy, self.tune, settings) if self.tune else []
        if not grid:
            run = self._fit(cell, settings, cell.run_dir, cell.test_csv)
            test = {
                "accuracy": run.summary["test_accuracy"],
                "balanced_accuracy": run.summary["test_balanced_accuracy"],
                "macro_f1": run.summary["test_macro_f1"],
            }
            row = _row_from_run(run, test) | {"chosen": {}, "tune_runs": 0, "tune_seconds": 0.0}
            self._drop_model(run)
        else:
            # Nested: every candidate sees only the outer training part (train + val, no test) and is chosen
            # on validation accuracy; the outer test fold is read once, by the chosen model, afterwards.
            best, tried, tune_seconds = None, [], 0.0
            for number, candidate in enumerate(grid):
                run = self._fit(cell, settings | candidate, cell.run_dir / f"tune-{number}", None)
                tried.append(candidate | {"val_accuracy": run.summary["val_accuracy"]})
                tune_seconds += run.summary["train_seconds"]
                if best is None or run.summary["val_accuracy"] > best[1].summary["val_accuracy"]:
                    if best is not None:
                        self._drop_model(best[1])
                    best = (candidate, run)
                else:
                    self._drop_model(run)
            chosen, run = best
            test = run.model.evaluate(cell.test_csv)
            row = _row_from_run(run, test) | {"chosen": chosen, "tune_runs": len(grid), "tune_seconds": tune_seconds}
            row["candidates"] = tried
            self._drop_model(run)
        row = cell.key() | {"images_per_class": cell.images_per_class} | row
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(row, indent=2, default=str))
        return row


# --- aggregation -----------------------------------------------------------------------------------


def summarize(values: Iterable[float], confidence: float = 0.95) -> dict:
    """n, mean, sample std and the t-distribution confidence interval of the mean (NaN where undefined)."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(data.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std, sem = float(data.std(ddof=1)), float(stats.sem(data))
    low, high = (mean, mean) if sem == 0 else stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return {"n": n, "mean": mean, "std": std, "ci_low": float(low), "ci_high": float(high)}


def level_order(level: str) -> float:
    return math.inf if level == ALL else float(level)


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per strategy × shot level: mean, std and 95% CI of every metric over the splits."""
    table = []
    strategies = list(dict.fromkeys(row["strategy"] for row in rows))
    levels = sorted({row["shots"] for row in rows}, key=level_order)
    for level in levels:
        for strategy in strategies:
            cell = [row for row in rows if row["strategy"] == strategy and row["shots"] == level]
            if not cell:
                continue
            entry = {
                "strategy": strategy,
                "shots": level,
                "images_per_class": float(np.mean([row["images_per_class"] for row in cell])),
                "n": len(cell),
            }
            for metric in METRICS:
                stat = summarize(row[metric] for row in cell)
                entry |= {f"{metric}_{k}": v for k, v in stat.items() if k != "n"}
            table.append(entry)
    return table


def _level_words(level: str) -> str:
    return "all training images" if level == ALL else f"{level} image{'s' if level != '1' else ''} per class"


def _points(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"  # + 0.0 turns -0.0 into 0.0


def transfer_verdicts(rows: list[dict], metric: str = "test_accuracy") -> list[dict]:
    """Transfer vs scratch at every shot level, in numbers and words, from paired differences over the splits
    both ran on: negative transfer is declared only when scratch wins beyond the 95% CI of the difference."""
    verdicts = []
    for level in sorted({row["shots"] for row in rows}, key=level_order):
        at_level = [row for row in rows if row["shots"] == level]
        scratch = {row["split"]: row[metric] for row in at_level if row["strategy"] == SCRATCH}
        transfer = [s for s in dict.fromkeys(row["strategy"] for row in at_level) if s != SCRATCH]
        if not scratch or not transfer:
            continue
        for strategy in transfer:
            mine = {row["split"]: row[metric] for row in at_level if row["strategy"] == strategy}
            paired = sorted(set(mine) & set(scratch))
            if not paired:
                continue
            diff = summarize(scratch[s] - mine[s] for s in paired)  # > 0: scratch better
            if diff["n"] < 2:
                kind = "undecided"
            elif diff["ci_low"] > 0:
                kind = "negative-transfer"
            elif diff["ci_high"] < 0:
                kind = "transfer-helps"
            else:
                kind = "no-clear-difference"
            verdicts.append(
                {
                    "shots": level,
                    "strategy": strategy,
                    "metric": metric,
                    "n": diff["n"],
                    "scratch_minus_transfer": diff["mean"],
                    "ci_low": diff["ci_low"],
                    "ci_high": diff["ci_high"],
                    "transfer_mean": float(np.mean([mine[s] for s in paired])),
                    "scratch_mean": float(np.mean([scratch[s] for s in paired])),
                    "kind": kind,
                    "sentence": _sentence(kind, strategy, level, diff, metric),
                }
            )
    return verdicts


def _sentence(kind: str, strategy: str, level: str, diff: dict, metric: str) -> str:
    what = metric.removeprefix("test_").replace("_", " ")
    gap = -diff["mean"]  # transfer minus scratch, in points below
    where = f"With {_level_words(level)}"
    ci = f"95% CI of {strategy} minus scratch: {_points(-diff['ci_high'])} to {_points(-diff['ci_low'])} points"
    if kind == "negative-transfer":
        return (
            f"{where}, negative transfer: training from scratch beats {strategy} by {100 * diff['mean']:.1f} points "
            f"of {what} over {diff['n']} splits ({ci}, entirely below zero)."
        )
    if kind == "transfer-helps":
        return f"{where}, {strategy} beats training from scratch by {100 * gap:.1f} points of {what} ({ci})."
    if kind == "no-clear-difference":
        return (
            f"{where}, {strategy} and training from scratch differ by {_points(gap)} points of {what}, "
            f"within the noise ({ci} includes zero)."
        )
    return f"{where}, {strategy} minus scratch is {_points(gap)} points of {what} on a single split (no CI)."


def headline(verdicts: list[dict]) -> str:
    """One sentence on negative transfer over the whole comparison."""
    if not verdicts:
        return "Add scratch to the strategies to measure what transfer gains over training from scratch."
    negative = [v for v in verdicts if v["kind"] == "negative-transfer"]
    if negative:
        cells = "; ".join(f"{v['strategy']} with {_level_words(v['shots'])}" for v in negative)
        return f"Negative transfer: training from scratch beats {cells}, beyond the 95% confidence interval."
    helped = [v for v in verdicts if v["kind"] == "transfer-helps"]
    return (
        f"No negative transfer: scratch never beats a transfer strategy beyond the 95% confidence interval; "
        f"transfer wins clearly in {len(helped)} of {len(verdicts)} comparisons."
    )


# --- the command -----------------------------------------------------------------------------------


def default_out_dir(data: str | Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"compare-{Path(str(data)).resolve().name or 'data'}-{stamp}"


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
    scratch_epochs: int = SCRATCH_RECIPE["epochs"],
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
    recipe. `budget` (e.g. '30m') stops launching runs once spent. `fit` is for tests: default `graftcv.fit`.
    """
    strategy_names = parse_list(strategies)
    unknown = [s for s in strategy_names if s not in STRATEGIES and s != SCRATCH]
    if unknown or not strategy_names:
        names = ", ".join([*STRATEGIES, SCRATCH])
        raise GraftcvError(f"Unknown strategy {unknown[0] if unknown else ''!r}: choose among {names}.")
    tune_names = parse_list(tune)
    bad_tune = [t for t in tune_names if t not in TUNABLE]
    if bad_tune:
        raise GraftcvError(f"--tune {bad_tune[0]!r} is not tunable: choose among {', '.join(TUNABLE)}.")
    clash = sorted(CONTROLLED & set(settings))
    if clash:
        raise GraftcvError(f"compare sets {', '.join(clash)} itself: use its own options instead.")
    if scratch_epochs < 1:
        raise GraftcvError("--scratch-epochs must be at least 1.")
    try:
        budget_time = parse_duration(budget)
    except GraftcvError:
        raise GraftcvError(f"--budget must look like 90s, 30m or 1h30m, not {budget!r}.") from None
    levels = parse_shots(shots)
    images = pooled_images(data)
    splits = build_splits(images.labels, folds, repeats, levels, seed, val_fraction, test_fraction)

    out_dir = Path(out) if out else default_out_dir(data)
    protocol = {
        "data": str(Path(data).resolve()),
        "mode": "repeated stratified splits" if repeats is not None else "stratified k-fold",
        "splits": len(splits),
        "test_fraction": test_fraction if repeats is not None else 1 / len(splits),
        "val_fraction": val_fraction,
        "shots": levels,
        "seed": seed,
        "images": len(images),
        "class_counts": images.counts(),
        "strategies": strategy_names,
        "tune": tune_names,
        "scratch_recipe": SCRATCH_RECIPE | {"epochs": scratch_epochs},
    }
    _claim(out_dir, protocol, settings, resume)
    common = {"progress": False} | settings | {"seed": seed}
    runner = _Runner(fit or api.fit, common, tune_names, budget_time, keep_models, resume)
    rows, missing = [], []
    cells = _cells(images, splits, levels, strategy_names, out_dir)
    for number, cell in enumerate(cells, start=1):
        if runner.spent() and not runner.finished(cell):
            missing.append(cell.key())
            continue
        row = runner.run(cell, strategy_settings(cell.strategy, common, scratch_epochs))
        rows.append(row)
        log.info(
            "[%d/%d] %s · %s · split %d: test accuracy %.3f (%.0f s)",
            number,
            len(cells),
            cell.strategy,
            _level_words(cell.level),
            cell.split.index,
            row["test_accuracy"],
            row["train_seconds"],
        )
    comparison = Comparison(
        out_dir, rows, aggregate(rows), transfer_verdicts(rows), missing, protocol, _public(settings, budget)
    )
    from graftcv.compare_report import write_outputs

    comparison.files = write_outputs(comparison)
    return comparison


def _public(settings: dict, budget: str | None) -> dict:
    return {k: v for k, v in settings.items() if k != "progress"} | {"budget": budget}


def _claim(out_dir: Path, protocol: dict, settings: dict, resume: bool) -> None:
    """Refuse to mix runs of a different protocol into an existing directory."""
    marker = out_dir / "protocol.json"
    record = {"protocol": protocol, "settings": _public(settings, None)}
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    if marker.exists():
        if not resume:
            raise GraftcvError(f"{out_dir} already holds a comparison: choose another --out, or pass --resume.")
        if marker.read_text() != text:
            raise GraftcvError(f"{out_dir} holds a comparison with other data or settings: it cannot be resumed.")
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(text)


def _cells(images: ImageSet, splits: list[Split], levels: list[str], strategies: list[str], out_dir: Path):
    """Split by split, so that a budget that ends early leaves whole splits that compare every strategy."""
    cells = []
    for split in splits:
        folder = out_dir / "splits" / f"split-{split.index}"
        val_csv = write_split_csv(folder / "val.csv", images, split.val)
        test_csv = write_split_csv(folder / "test.csv", images, split.test)
        for level in levels:
            rows = split.subsets[level]
            train_csv = write_split_csv(folder / f"train-{level}.csv", images, rows)
            per_class = len(rows) / len({images.labels[i] for i in rows})
            for strategy in strategies:
                run_dir = out_dir / "runs" / f"split-{split.index}" / f"shots-{level}" / strategy
                cells.append(_Cell(strategy, level, split, train_csv, val_csv, test_csv, per_class, run_dir))
    return cells
