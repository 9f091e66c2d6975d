"""Multi-label and multi-task image lists from CSV, and iteratively stratified splits of multi-label data.

Formats: `path,labels` with labels separated by ';' (an empty field: no label); with `zero_one=True`, `path,L1,L2,...`
of 0/1 columns; several label columns (`path,species,condition`) are tasks (`read_multitask_csv`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftcv.errors import GraftcvError

SEPARATOR = ";"


@dataclass
class MultiLabelSet:
    """Images and their label sets: `targets[i, j]` is 1 when image i shows label j."""

    paths: list[Path]
    targets: np.ndarray
    labels: list[str]

    def subset(self, rows: np.ndarray) -> MultiLabelSet:
        return MultiLabelSet([self.paths[i] for i in rows], self.targets[rows], self.labels)


def _rows(source: Path) -> tuple[list[str], list[list[str]]]:
    if not source.is_file():
        raise GraftcvError(f"Label file {source} does not exist.")
    with source.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise GraftcvError(f"{source} has no images: a header row and one row per image are needed.")
    header = [cell.strip() for cell in rows[0]]
    if header[0].lower() != "path" or len(header) < 2:
        raise GraftcvError(f"{source}: the first row must be path,LABELS (or path,TASK,... for several tasks).")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise GraftcvError(f"{source}, line {line}: {len(row)} fields where the header has {len(header)}.")
    return header, rows[1:]


def _path(source: Path, cell: str) -> Path:
    path = Path(cell.strip()).expanduser()
    return path if path.is_absolute() else (source.parent / path)


def read_multilabel_csv(csv_path: str | Path, zero_one: bool = False) -> MultiLabelSet:
    """Images with a set of labels each; label names sorted, so that the same file gives the same columns."""
    source = Path(csv_path).expanduser()
    header, rows = _rows(source)
    paths = [_path(source, row[0]) for row in rows]
    if zero_one:
        names = header[1:]
        try:
            targets = np.array([[int(cell) for cell in row[1:]] for row in rows], dtype=np.uint8)
        except ValueError:
            raise GraftcvError(f"{source}: with --multi-label every label column holds 0 or 1.") from None
        if targets.max(initial=0) > 1:
            raise GraftcvError(f"{source}: with --multi-label every label column holds 0 or 1.")
        return MultiLabelSet(paths, targets, names)
    if len(header) != 2:
        raise GraftcvError(f"{source}: path,labels has two columns; several label columns are tasks "
                           "(read as multi-task), 0/1 columns need --multi-label.")  # fmt: skip
    sets = [{label.strip() for label in row[1].split(SEPARATOR) if label.strip()} for row in rows]
    names = sorted(set().union(*sets))
    if not names:
        raise GraftcvError(f"{source}: no image has a label.")
    targets = np.array([[name in found for name in names] for found in sets], dtype=np.uint8)
    return MultiLabelSet(paths, targets, names)


def read_multitask_csv(csv_path: str | Path, tasks: list[str] | None = None) -> tuple[list[Path], dict[str, list]]:
    """Image paths and, per task column, each image's label (a task whose cells hold ';' is multi-label: a set)."""
    source = Path(csv_path).expanduser()
    header, rows = _rows(source)
    columns = header[1:]
    chosen = tasks or columns
    unknown = [task for task in chosen if task not in columns]
    if unknown:
        raise GraftcvError(f"{source} has no label column {unknown[0]!r}: its columns are {', '.join(columns)}.")
    found = {}
    for task in chosen:
        cells = [row[header.index(task)].strip() for row in rows]
        if any(SEPARATOR in cell for cell in cells):
            found[task] = [{label.strip() for label in cell.split(SEPARATOR) if label.strip()} for cell in cells]
        else:
            if any(not cell for cell in cells):
                raise GraftcvError(f"{source}: task {task!r} has images with no label (a single-label task needs one).")
            found[task] = cells
    return [_path(source, row[0]) for row in rows], found


def stratified_split(targets: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) rows, `fraction` held out, with every label's share kept on both sides as far as the
    label sets allow (iterative stratification, Sechidis et al. 2011, as iterative-stratification implements it)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    kept, held = next(splitter.split(np.zeros(len(targets)), np.asarray(targets)))
    return np.sort(kept), np.sort(held)
