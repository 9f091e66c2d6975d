"""Multi-label and multi-task data from CSV: the tasks, the images as label texts, checked and split.

`path,labels` (';'-separated, empty allowed) or with `zero_one` 0/1 columns: one multi-label task; several named
label columns: one task each (a column whose cells hold ';' is multi-label). Validation and test CSVs must have the
training file's columns and only labels seen in training; without a validation file, an iteratively stratified
share of training is held out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from graftcv.data.discovery import IMAGE_SUFFIXES, DataSplits, _drop_unreadable, _warn_duplicates
from graftcv.data.duplicates import content_digests, copies_of, drop_repeated_paths, drop_seen
from graftcv.data.multilabel import SEPARATOR, read_multilabel_csv, read_multitask_csv, stratified_split
from graftcv.data.sets import ImageSet
from graftcv.data.tasks import JOIN, MULTI, MULTILABEL_TASK, SINGLE, Layout, Task
from graftcv.errors import GraftcvError


def csv_header(path: Path) -> list[str] | None:
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle), None)
    return [cell.strip() for cell in first] if first else None


def is_multi_source(data: str | Path, zero_one: bool = False) -> bool:
    """A CSV that `discover_multi` reads: `path,labels`, several label columns, or 0/1 columns with `zero_one`."""
    header = csv_header(Path(data).expanduser())
    if not header or header[0].lower() != "path" or len(header) < 2:
        return False
    return zero_one or len(header) > 2 or header[1].lower() == "labels"


def _read(source: Path, zero_one: bool) -> tuple[list[Path], list[Task], list[list]]:
    """Paths, the tasks as this file defines them, and per task each image's value (a class or a set)."""
    header = csv_header(source) or []
    if zero_one or (len(header) == 2 and header[1].lower() == "labels"):
        found = read_multilabel_csv(source, zero_one)
        values = [{found.labels[j] for j in np.flatnonzero(row)} for row in found.targets]
        return found.paths, [Task(MULTILABEL_TASK, MULTI, tuple(found.labels))], [values]
    paths, columns = read_multitask_csv(source)
    tasks, values = [], []
    for name, cells in columns.items():
        multi = any(isinstance(cell, set) for cell in cells)
        cells = [cell if isinstance(cell, set) else ({cell} if multi and cell else cell) for cell in cells]
        names = sorted(set().union(*cells)) if multi else sorted(set(cells))
        tasks.append(Task(name, MULTI if multi else SINGLE, tuple(names)))
        values.append(cells)
    return paths, tasks, values


def _label_texts(layout: Layout, values: list[list]) -> list[str]:
    """Each image's ';'-joined output names."""
    prefix = len(layout.tasks) > 1
    texts = []
    for row in range(len(values[0])):
        names = []
        for task, column in zip(layout.tasks, values, strict=True):
            cell = column[row]
            for label in sorted(cell) if isinstance(cell, set) else [cell]:
                names.append(f"{task.name}:{label}" if prefix else label)
        texts.append(JOIN.join(names))
    return texts


def _images(source: Path, zero_one: bool, skipped: list, duplicates: dict) -> tuple[ImageSet, list[Task]]:
    paths, tasks, values = _read(source, zero_one)
    texts = _label_texts(Layout(tuple(tasks)), values)
    images = ImageSet(paths, texts, multi=True)
    unsupported = [i for i, p in enumerate(paths) if p.suffix.lower() not in IMAGE_SUFFIXES]
    skipped.extend(
        (str(paths[i]), f"not a supported image type ({paths[i].suffix or 'no suffix'})") for i in unsupported
    )
    images = images.subset([i for i in range(len(paths)) if i not in set(unsupported)])
    images, repeated = drop_repeated_paths(images)
    duplicates["repeated_paths"] += repeated
    return _drop_unreadable(images, skipped), tasks


def _check_against(training: Layout, tasks: list[Task], source: Path, name: str) -> None:
    """A validation or test file with the training file's columns and no label training never saw."""
    if [t.name for t in tasks] != [t.name for t in training.tasks]:
        extra = [t.name for t in tasks if t.name not in {u.name for u in training.tasks}]
        what = f"label column {extra[0]!r}, which training does not have" if extra else "other label columns"
        raise GraftcvError(f"The {name} file {source} has {what}: its columns must be the training file's.")
    for mine, theirs in zip(training.tasks, tasks, strict=True):
        unseen = sorted(set(theirs.classes) - set(mine.classes))
        if unseen:
            raise GraftcvError(f"The {name} data has label {unseen[0]!r} ({mine.name}), never seen in training.")


def _check_training(layout: Layout, images: ImageSet, source: Path) -> None:
    if len(images) < 2:
        raise GraftcvError(f"{source} has fewer than 2 usable images.")
    counts = images.counts()
    for task, outputs in zip(layout.tasks, _task_outputs(layout), strict=True):
        if task.kind == SINGLE and len(task.classes) < 2:
            raise GraftcvError(f"Task {task.name!r} has one class ({task.classes[0]!r}): at least two are needed.")
        empty = [name for name in outputs if not counts.get(name)]
        if empty:
            raise GraftcvError(f"Label {empty[0]!r} has no usable training image.")


def _given(flag: str, given: str | Path, zero_one: bool, layout: Layout, seen: set[str], skipped: list,
           duplicates: dict) -> ImageSet:  # fmt: skip
    """A validation or test CSV, checked against training, less the files an earlier split holds (whose digests,
    `seen`, it then joins)."""
    path = Path(given).expanduser()
    if not path.is_file():
        raise GraftcvError(f"{flag} {given} is not a CSV file (multi-label data takes its {flag[2:]} set as one).")
    images, tasks = _images(path, zero_one, skipped, duplicates)
    _check_against(layout, tasks, path, "validation" if flag == "--val" else "test")
    digests = content_digests(images.paths)
    images, dropped = drop_seen(images, digests, seen)
    duplicates["copies_dropped"] += dropped
    seen.update(digests)
    return images


def _task_outputs(layout: Layout) -> list[list[str]]:
    names = layout.outputs
    return [names[part] for part in layout.slices]


def discover_multi(
    data: str | Path,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    zero_one: bool = False,
) -> DataSplits:
    """Train/val(/test) sets of a multi-label or multi-task CSV (see the module's docstring)."""
    source = Path(data).expanduser()
    skipped: list[tuple[str, str]] = []
    duplicates = {"repeated_paths": 0, "identical_files": 0, "copies_dropped": 0}
    train, tasks = _images(source, zero_one, skipped, duplicates)
    layout = Layout(tuple(tasks))
    _check_training(layout, train, source)
    digests = content_digests(train.paths)
    duplicates["identical_files"] = copies_of(digests)
    seen = set(digests)
    if val is not None:
        val_set = _given("--val", val, zero_one, layout, seen, skipped, duplicates)
        val_source = str(Path(val).expanduser())
    else:
        kept, held = stratified_split(train.targets(layout.outputs), val_fraction, seed)
        train, val_set = train.subset(kept.tolist()), train.subset(held.tolist())
        val_source = f"iteratively stratified {val_fraction:g} of training (seed {seed})"
    if len(val_set) == 0:
        raise GraftcvError(f"The validation set of {source} is empty.")
    test_set = None if test is None else _given("--test", test, zero_one, layout, seen, skipped, duplicates)
    _warn_duplicates(duplicates)
    splits = DataSplits(train, val_set, test_set, layout.outputs, "csv", val_source, skipped, tasks=layout)
    splits.duplicates = duplicates
    return splits


def read_multi_source(data: str | Path, zero_one: bool = False) -> tuple[ImageSet, Layout, list]:
    """Every image of a multi-label or multi-task CSV with its tasks, checked like training data, unsplit (for
    `compare`, which draws its own folds): (images, layout, skipped files)."""
    source = Path(data).expanduser()
    skipped: list[tuple[str, str]] = []
    images, tasks = _images(source, zero_one, skipped, {"repeated_paths": 0})
    layout = Layout(tuple(tasks))
    _check_training(layout, images, source)
    return images, layout, skipped


def read_multi_labelled(data: str | Path, layout: Layout) -> tuple[ImageSet, list]:
    """Labelled images of a multi-label or multi-task CSV for evaluation against a model's `layout` (a multi-label
    model reads path,labels or its 0/1 columns)."""
    source = Path(data).expanduser()
    header = csv_header(source)
    if not header or header[0].lower() != "path" or len(header) < 2:
        raise GraftcvError(f"{source} is not a CSV of labelled images (a multi-label model is evaluated on one).")
    zero_one = len(layout.tasks) == 1 and not (len(header) == 2 and header[1].lower() == "labels")
    skipped: list[tuple[str, str]] = []
    images, tasks = _images(source, zero_one, skipped, {"repeated_paths": 0})
    _check_against(layout, tasks, source, "evaluation")
    if len(images) == 0:
        raise GraftcvError(f"No usable images in {source}.")
    return images, skipped


__all__ = ["SEPARATOR", "discover_multi", "is_multi_source", "read_multi_labelled", "read_multi_source"]
