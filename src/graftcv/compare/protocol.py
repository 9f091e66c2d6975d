"""The protocol: pooled images, outer splits with validation sets and shot subsets, and each cell's settings."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from graftcv.data import ImageSet, read_labelled, warn_skipped
from graftcv.data.discovery import SPLIT_ALIASES
from graftcv.data.duplicates import content_digests, copies_of
from graftcv.data.multi_discovery import is_multi_source, read_multi_source
from graftcv.data.shards import is_shard_source
from graftcv.data.tasks import Layout
from graftcv.errors import GraftcvError
from graftcv.strategies import STRATEGIES
from graftcv.training.regularizers import parse_regularizers

log = logging.getLogger("graftcv")

SCRATCH = "scratch"  # the strategy every other one is compared against
ALL = "all"


@dataclass(frozen=True)
class Split:
    """One outer split, as indices into the pooled images: training pool, validation, held-out test,
    and the class-balanced training subset for every shot level (nested: each K contains every smaller K);
    `copies`: the groups of byte-identical images, each kept whole in one of train, val and test."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    subsets: dict[str, np.ndarray]
    copies: list[list[int]] = field(default_factory=list)


# --- input -----------------------------------------------------------------------------------------


def pooled_images(data: str | Path) -> ImageSet:
    """Every labelled image under `data` (absolute paths): train/val/test folders are pooled, because compare
    draws its own folds; otherwise ROOT/CLASS/* or a path,label CSV, or shards (unpacked once into the cache)."""
    if is_shard_source(data):
        from graftcv.data.shard_unpack import unpack

        data = unpack(data)
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
        warn_skipped(skipped)
        pooled.paths.extend(Path(path).resolve() for path in images.paths)
        pooled.labels.extend(images.labels)
    if len(pooled.counts()) < 2:
        raise GraftcvError(f"{data} has only one class: at least two are needed to compare classifiers.")
    return pooled


def pooled_data(data: str | Path, multi_label: bool = False) -> tuple[ImageSet, Layout | None]:
    """The images to compare on and, for a multi-label or multi-task CSV (`path,labels`, several label columns, or
    0/1 columns with `multi_label`), its tasks; one label per image: `pooled_images` and None."""
    if not is_shard_source(data) and is_multi_source(Path(data).expanduser(), multi_label):
        images, layout, skipped = read_multi_source(data, multi_label)
        warn_skipped(skipped)
        images.paths = [Path(path).resolve() for path in images.paths]
        return images, layout
    return pooled_images(data), None


def content_groups(images: ImageSet) -> list[str]:
    """A digest of every image's bytes, the groups `build_splits` keeps on one side of every split (as `graftcv
    train` does: `graftcv.data.duplicates`); one warning says how many files repeat another's bytes."""
    digests = content_digests(images.paths)
    copies = copies_of(digests)
    if copies:
        log.warning(
            "Duplicates: %d byte-identical file(s) (under other names or in other classes) kept on the same side "
            "of every split.",
            copies,
        )
    return digests


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
    """'a, b,,c' or an iterable → ['a', 'b', 'c']; None → []."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [str(item).strip() for item in items if str(item).strip()]


def level_words(level: str) -> str:
    return "all training images" if level == ALL else f"{level} image{'s' if level != '1' else ''} per class"


# --- splits ----------------------------------------------------------------------------------------


def _stratified(splitter, labels: np.ndarray, what: str):
    try:
        return list(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as error:  # scikit-learn: too few members of a class, or a test set smaller than the classes
        raise GraftcvError(f"Cannot draw the {what}: {str(error).splitlines()[0]}") from None


class _Groups:
    """Images with identical bytes as one unit: splitters draw the groups (each as its first image, with that
    image's label) and every split takes its groups whole. Without copies every image is its own group, in the
    same order, so the splits are exactly those drawn image by image."""

    def __init__(self, labels: np.ndarray, groups: list[str] | None) -> None:
        keys = list(range(len(labels))) if groups is None else groups
        if len(keys) != len(labels):
            raise ValueError(f"{len(keys)} groups for {len(labels)} labels")
        members: dict[object, list[int]] = {}
        for row, key in enumerate(keys):
            members.setdefault(key, []).append(row)
        self.members = [np.asarray(rows) for rows in members.values()]  # in order of first appearance
        self.first = np.asarray([rows[0] for rows in self.members])
        self.labels = labels[self.first]
        self.copies = [rows.tolist() for rows in self.members if len(rows) > 1]
        # distinct images per class; a group holding images of several classes counts once for each of them
        pairs = dict.fromkeys(zip(keys, labels.tolist(), strict=True))
        self.distinct = dict(sorted(Counter(label for _, label in pairs).items()))

    def rows(self, groups: np.ndarray) -> np.ndarray:
        """The image rows of these groups."""
        return np.concatenate([self.members[g] for g in groups]) if len(groups) else np.zeros(0, dtype=int)


def build_splits(
    labels: list[str],
    folds: int | None = None,
    repeats: int | None = None,
    shots: list[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    groups: list[str] | None = None,
    targets: np.ndarray | None = None,
) -> list[Split]:
    """Outer splits (stratified k-fold, or `repeats` stratified shuffle splits), each with a validation set
    drawn from its training part and class-balanced shot subsets drawn from the rest, once per split.
    `targets` (0/1 rows, several labels per image): the splits are iteratively stratified on them (every label's
    share kept on each side as far as the label sets allow) and every split trains on all its training images.

    Everything depends on `seed` and the labels only, never on the strategy, so every strategy sees the
    same training subsets, the same validation images and the same held-out images. Images with the same
    `groups` key (`content_groups`: identical bytes) never straddle train, validation and test: a copy of a
    training image among the held-out ones would inflate the score.
    """
    y = np.asarray(labels)
    units = _Groups(y, groups)
    distinct = units.distinct
    smallest = min(distinct, key=lambda c: (distinct[c], c))
    several = targets is not None
    levels = shots or [ALL]
    if several and levels != [ALL]:
        raise GraftcvError("--shots takes K images per class: with several labels per image, compare trains on all.")
    kfold, shuffled = _splitters(several)
    if folds is not None and repeats is not None:
        raise GraftcvError("Choose --folds (k-fold cross-validation) or --repeats (repeated splits), not both.")
    if repeats is not None:
        if repeats < 1:
            raise GraftcvError("--repeats must be at least 1.")
        if not 0.0 < test_fraction < 1.0:
            raise GraftcvError(f"--test-fraction must be between 0 and 1, got {test_fraction}.")
        outer = shuffled(n_splits=repeats, test_size=test_fraction, random_state=seed)
    else:
        folds = 5 if folds is None else folds
        if folds < 2:
            raise GraftcvError("--folds must be at least 2.")
        if several and folds > len(units.first):
            raise GraftcvError(f"--folds {folds} is more than the {len(units.first)} distinct images.")
        if not several and folds > distinct[smallest]:
            copies = " (byte-identical copies count once)" if units.copies else ""
            raise GraftcvError(
                f"--folds {folds} is more than the {distinct[smallest]} images of class {smallest!r}{copies}."
            )
        outer = kfold(n_splits=folds, shuffle=True, random_state=seed)
    if not 0.0 < val_fraction < 1.0:
        raise GraftcvError(f"--val-fraction must be between 0 and 1, got {val_fraction}.")
    strata = np.asarray(targets)[units.first] if several else units.labels
    splits = []
    for index, (train_part, test) in enumerate(_stratified(outer, strata, "outer splits")):
        inner = shuffled(n_splits=1, test_size=val_fraction, random_state=seed + index)
        (fit_rows, val_rows), *_ = _stratified(inner, strata[train_part], f"validation set of split {index}")
        train, val = units.rows(train_part[fit_rows]), units.rows(train_part[val_rows])
        originals = train[np.isin(train, units.first)]  # K shots are K different images, not one and its copy
        subsets = (
            {ALL: np.sort(train)}
            if several
            else shot_subsets(y, train, levels, np.random.default_rng([seed, index]), index, originals)
        )
        splits.append(Split(index, np.sort(train), np.sort(val), np.sort(units.rows(test)), subsets, units.copies))
    return splits


def _splitters(several: bool) -> tuple[type, type]:
    """(k-fold, shuffle-split) classes: scikit-learn's stratified ones, or iterative stratification's multi-label
    ones (iterative-stratification, Sechidis et al. 2011) for 0/1 rows."""
    if not several:
        return StratifiedKFold, StratifiedShuffleSplit
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

    return MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit


def shot_subsets(
    y: np.ndarray,
    train: np.ndarray,
    levels: list[str],
    rng: np.random.Generator,
    index: int,
    candidates: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """K images of each class for every level K: one random order per class, cut at K, so the subsets nest.
    `candidates`: the rows of `train` a K-shot subset may take (default all); 'all' is the whole of `train`."""
    pool = train if candidates is None else candidates
    orders = {c: rng.permutation(pool[y[pool] == c]) for c in np.unique(y)}
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


def splits_record(images: ImageSet, splits: list[Split]) -> dict:
    """Every split's image paths (train, val, test, and the training images of each shot level), for people."""

    def paths(rows: np.ndarray) -> list[str]:
        return [str(images.paths[i]) for i in rows]

    copies = splits[0].copies if splits else []
    return {
        # files with identical bytes: each group sits whole in train, val or test of every split
        "identical_files": sum(len(group) - 1 for group in copies),
        "copies": [paths(np.asarray(group)) for group in copies],
        "splits": [
            {
                "index": split.index,
                "train": paths(split.train),
                "val": paths(split.val),
                "test": paths(split.test),
                "shots": {level: paths(rows) for level, rows in split.subsets.items()},
            }
            for split in splits
        ],
    }


# --- strategies and their settings ---------------------------------------------------------------

# Nested tuning: the small grid tried around each setting's base value.
TUNABLE = ("lr", "epochs", "unfreeze")


def variant(name: str) -> tuple[str, str | None]:
    """'finetune+l2sp+bss' → ('finetune', 'l2sp,bss'): a strategy with fine-tuning regularizers (`--reg`), compared
    as a row of its own; a plain name has none."""
    strategy, *regularizers = name.split("+")
    return strategy, ",".join(regularizers) or None


def check_strategies(names: list[str]) -> list[str]:
    """The rows named (registered strategies, optionally STRATEGY+REGULARIZER...), in order, checked: an unknown
    name is one sentence."""
    if not names:
        raise GraftcvError(f"No strategy to compare: choose among {', '.join(STRATEGIES)}.")
    for name in names:
        strategy, regularizers = variant(name)
        spec = STRATEGIES.lookup(strategy)
        if regularizers is not None:
            parse_regularizers(regularizers)
            if spec.closed_form:
                raise GraftcvError(f"{name}: {strategy} fits its head in closed form; regularizers (+{regularizers}) "
                                   "apply to gradient strategies only.")  # fmt: skip
    return names


def check_tune(names: list[str]) -> list[str]:
    bad = [name for name in names if name not in TUNABLE]
    if bad:
        raise GraftcvError(f"--tune {bad[0]!r} is not tunable: choose among {', '.join(TUNABLE)}.")
    return names


def strategy_settings(strategy: str, common: dict, scratch_epochs: int) -> dict:
    """The settings `fit` gets for a strategy: the shared ones less those the strategy fixes itself. The shared
    settings are for the transfer strategies: the scratch baseline keeps its own recipe (lr and defaults, which
    `fit` applies) and trains for `scratch_epochs`."""
    strategy, regularizers = variant(strategy)
    spec = STRATEGIES.lookup(strategy)
    dropped = set(spec.fixed)
    if strategy == SCRATCH:
        dropped |= {"epochs", "lr", *spec.defaults}
    settings = {k: v for k, v in common.items() if k not in dropped}
    if strategy == SCRATCH:
        settings["epochs"] = scratch_epochs
    if regularizers is not None:
        settings["reg"] = regularizers
    return settings | {"strategy": strategy}


def scratch_recipe(scratch_epochs: int) -> dict:
    """What the registry's scratch strategy brings, as protocol.json records it."""
    spec = STRATEGIES.lookup(SCRATCH)
    return {"epochs": scratch_epochs, "lr": spec.lr, "defaults": dict(spec.defaults), "fixed": dict(spec.fixed)}


def tuning_grid(strategy: str, tune: list[str], settings: dict) -> list[dict]:
    """The candidates nested tuning tries for one strategy: a product of small grids around the base values
    (settings the strategy cannot tune are left out, so closed-form strategies are never tuned)."""
    spec = STRATEGIES.lookup(variant(strategy)[0])
    names = [] if spec.closed_form else [name for name in tune if name in spec.tunable and name in TUNABLE]
    if not names:
        return []
    lr = float(settings["lr"]) if isinstance(settings.get("lr"), (int, float)) else spec.lr or 1e-3
    epochs = settings.get("epochs") or spec.epochs or 1
    values = {
        "lr": [lr / 3, lr, lr * 3],
        "epochs": sorted({max(1, epochs // 2), epochs, epochs * 2}),
        "unfreeze": [1, 2, 4],
    }
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[n] for n in names))]
