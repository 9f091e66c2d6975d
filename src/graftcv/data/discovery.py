"""Find images and labels in a folder tree or a CSV, drop unusable files, and split train/val/test."""

from __future__ import annotations

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graftcv.data.duplicates import content_digests, copies_of, drop_repeated_paths, drop_seen
from graftcv.data.images import check_image
from graftcv.data.sets import ImageSet
from graftcv.data.tasks import Layout
from graftcv.errors import GraftcvError

log = logging.getLogger("graftcv")

# torchvision's ImageFolder list: still images only (an animated or placeholder .gif is not a photo).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


@dataclass
class DataSplits:
    """What training needs to know about the data: the sets, the classes, and what was left out."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    classes: list[str]
    layout: str
    val_source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str | None = None  # what the splits came from, when not a path (config.json's "data")
    duplicates: dict[str, int] = field(default_factory=dict)  # repeated paths and identical files found
    tasks: Layout | None = None  # several labels per image: the tasks over the outputs (`classes`)

    @classmethod
    def from_sets(
        cls,
        train: ImageSet,
        val: ImageSet,
        test: ImageSet | None = None,
        source: str = "in-memory splits",
        tasks: Layout | None = None,
    ) -> DataSplits:
        """Splits someone already drew (compare's folds, say), checked like discovered ones; the images are
        not opened again, so they should come from `read_labelled` or `discover`."""
        if tasks is not None:
            if len(val) == 0:
                raise GraftcvError(f"The validation set of {source} is empty.")
            return cls(train, val, test, tasks.outputs, "in-memory", "given", source=source, tasks=tasks)
        classes = _check_classes(train, val, test, source)
        return cls(train, val, test, classes, "in-memory", "given", source=source)

    def describe(self) -> dict:
        return {
            "layout": self.layout,
            "val_source": self.val_source,
            "classes": self.classes,
            "train_counts": self.train.counts(),
            "val_counts": self.val.counts(),
            "test_counts": self.test.counts() if self.test else None,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test) if self.test else 0,
            "skipped_files": len(self.skipped),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "duplicates": self.duplicates,
            **({"kind": self.tasks.kind, "tasks": self.tasks.as_meta()} if self.tasks else {}),
        }


def _find_split_dir(root: Path, split: str) -> Path | None:
    children = {child.name.lower(): child for child in root.iterdir() if child.is_dir()}
    for alias in SPLIT_ALIASES[split]:
        if alias in children:
            return children[alias]
    return None


def _scan_class_folders(root: Path) -> tuple[ImageSet, list[Path]]:
    """ROOT/CLASS/**/file → labelled candidates; returns (set, files with unsupported suffixes)."""
    found, unsupported, empty = ImageSet(), [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        before = len(found)
        for file in sorted(class_dir.rglob("*")):
            if not file.is_file() or file.name.startswith("."):
                continue
            if file.suffix.lower() in IMAGE_SUFFIXES:
                found.paths.append(file)
                found.labels.append(class_dir.name)
            else:
                unsupported.append(file)
        if len(found) == before:
            empty.append(class_dir.name)
    if empty and len(found):
        log.warning("Left out %d folder(s) with no image files in %s: %s.", len(empty), root, ", ".join(empty[:5]))
    return found, unsupported


def _read_csv(csv_path: Path) -> tuple[ImageSet, list[Path]]:
    found, unsupported = ImageSet(), []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    for line_no, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise GraftcvError(f"{csv_path} row {line_no} is not 'path,label': {','.join(row)[:80]!r}.")
        path = Path(row[0].strip())
        path = path if path.is_absolute() else csv_path.parent / path
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.paths.append(path)
            found.labels.append(row[1].strip())
        else:
            unsupported.append(path)
    return found, unsupported


def _read_source(source: Path) -> tuple[ImageSet, list[Path]]:
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise GraftcvError(f"{source} is a file but not a CSV of path,label rows.")
        return _read_csv(source)
    return _scan_class_folders(source)


def _drop_unreadable(images: ImageSet, skipped: list[tuple[str, str]]) -> ImageSet:
    """Decode every file once (threads: PIL releases the GIL) and keep only those that work."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        reasons = list(pool.map(lambda p: check_image(p) if p.exists() else "missing file", images.paths))
    kept = ImageSet(multi=images.multi)
    for path, label, reason in zip(images.paths, images.labels, reasons, strict=True):
        if reason is None:
            kept.paths.append(path)
            kept.labels.append(label)
        else:
            skipped.append((str(path), reason))
    return kept


def _stratified_split(
    images: ImageSet, fraction: float, seed: int, digests: list[str] | None = None
) -> tuple[ImageSet, ImageSet]:
    """A seeded split that keeps every class on both sides, and byte-identical files (same `digests`) on one.

    Written here because scikit-learn's stratified splitters round per class and can leave a rare
    class (2 images beside 20) with no validation image at all.
    """
    if not 0.0 < fraction < 1.0:
        raise GraftcvError(f"--val-fraction must be between 0 and 1, got {fraction}.")
    rng = np.random.default_rng(seed)
    digests = digests or [str(i) for i in range(len(images))]
    copies: dict[str, list[int]] = {}
    for index, digest in enumerate(digests):
        copies.setdefault(digest, []).append(index)
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(images.labels):
        if copies[digests[index]][0] == index:  # a group of copies is drawn once, as its first member
            by_class.setdefault(label, []).append(index)
    val_idx: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        for first in rng.permutation(members)[:n_val].tolist():
            val_idx.extend(copies[digests[first]])
    chosen = set(val_idx)
    train_idx = [i for i in range(len(images)) if i not in chosen]
    return images.subset(train_idx), images.subset(sorted(val_idx))


def discover(
    data: str | Path,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplits:
    """Find the labelled images under `data` and return validated train/val(/test) sets.

    Layouts: ROOT/CLASS/*, ROOT/{train,val[,test]}/CLASS/* (with common aliases), or a CSV of
    path,label. `val` names a validation folder or CSV explicitly; without one, a stratified split of
    `val_fraction` is drawn with `seed`. Files that are not decodable still images are skipped and
    listed in `skipped`.
    """
    root = Path(data).expanduser()
    if not root.exists():
        raise GraftcvError(f"Data path {root} does not exist.")
    train_dir = _find_split_dir(root, "train") if root.is_dir() else None
    if train_dir is not None:
        layout = "split-folders"
        train_src: Path = train_dir
        val_src = Path(val).expanduser() if val else _find_split_dir(root, "val")
        test_src = Path(test).expanduser() if test else _find_split_dir(root, "test")
    else:
        layout = "csv" if root.is_file() else "class-folders"
        train_src, val_src = root, Path(val).expanduser() if val else None
        test_src = Path(test).expanduser() if test else None
    for named, path in (("--val", val), ("--test", test)):
        if path and not Path(path).expanduser().exists():
            raise GraftcvError(f"{named} path {path} does not exist.")

    skipped: list[tuple[str, str]] = []

    duplicates = {"repeated_paths": 0, "identical_files": 0, "copies_dropped": 0}

    def load(source: Path) -> ImageSet:
        images, unsupported = _read_source(source)
        images, repeated = drop_repeated_paths(images)
        duplicates["repeated_paths"] += repeated
        skipped.extend((str(p), f"not a supported image type ({p.suffix or 'no suffix'})") for p in unsupported)
        return _drop_unreadable(images, skipped)

    train = load(train_src)
    if len(train) == 0 and skipped:
        path, reason = skipped[0]
        raise GraftcvError(
            f"No images found in {train_src}: none of its {len(skipped)} file(s) is a usable image "
            f"({Path(path).name}: {reason})."
        )
    if len(train) == 0:
        raise GraftcvError(
            f"No images found in {train_src}: expected CLASS/image files, train/ and val/ folders, or a CSV."
        )
    counts = train.counts()
    _check_two_classes(counts, train_src)
    # A stratified validation split needs 2 images of a class (one each side). With the validation set
    # given explicitly, a single training image per class is legitimate: one-shot learning.
    too_small = [name for name, n in counts.items() if n < 2] if val_src is None else []
    if too_small:
        raise GraftcvError(
            f"Class {too_small[0]!r} has fewer than 2 training images"
            + (f" (and {len(too_small) - 1} more classes)" if len(too_small) > 1 else "")
            + " to split off a validation image: give the validation set with --val to train on one per class."
        )
    classes = sorted(counts)

    digest_of = dict(zip(train.paths, content_digests(train.paths), strict=True))
    duplicates["identical_files"] = copies_of(list(digest_of.values()))
    if val_src is not None:
        val_set, val_source = load(val_src), str(val_src)
        if len(val_set) == 0:
            raise GraftcvError(f"No images found in the validation data {val_src}.")
        val_set = _without_copies(val_set, digest_of, duplicates)
    else:
        train, val_set = _stratified_split(train, val_fraction, seed, [digest_of[p] for p in train.paths])
        val_source = f"stratified {val_fraction:g} of training (seed {seed})"
    test_set = load(test_src) if test_src is not None else None
    if test_set is not None:
        test_set = _without_copies(test_set, digest_of, duplicates)
    _check_classes(train, val_set, test_set, train_src)
    _warn_duplicates(duplicates)
    splits = DataSplits(train, val_set, test_set, classes, layout, val_source, skipped)
    splits.duplicates = duplicates
    return splits


def _without_copies(images: ImageSet, digest_of: dict[Path, str], duplicates: dict[str, int]) -> ImageSet:
    """A given validation or test set less the files whose bytes an earlier set holds; then it joins them."""
    digests = content_digests(images.paths)
    kept, dropped = drop_seen(images, digests, set(digest_of.values()))
    duplicates["copies_dropped"] += dropped
    digest_of.update(zip(images.paths, digests, strict=True))
    return kept


def _warn_duplicates(duplicates: dict[str, int]) -> None:
    parts = [
        f"{duplicates['repeated_paths']} repeated path(s) dropped" if duplicates["repeated_paths"] else "",
        f"{duplicates['identical_files']} byte-identical training file(s) kept on the same side of the split"
        if duplicates["identical_files"]
        else "",
        f"{duplicates['copies_dropped']} validation/test file(s) dropped as copies of earlier ones"
        if duplicates["copies_dropped"]
        else "",
    ]
    if any(parts):
        log.warning("Duplicates: %s.", "; ".join(p for p in parts if p))


def _check_two_classes(counts: dict[str, int], source: object) -> None:
    if len(counts) < 2:
        only = next(iter(counts), None)
        raise GraftcvError(f"Only one class ({only!r}) found in {source}: at least two are needed.")


def _check_classes(train: ImageSet, val: ImageSet, test: ImageSet | None, source: object) -> list[str]:
    """The sorted training classes, after checking there are two and that val/test use no others."""
    _check_two_classes(train.counts(), source)
    if len(val) == 0:
        raise GraftcvError(f"The validation set of {source} is empty.")
    classes = sorted(train.counts())
    for name, subset in (("validation", val), ("test", test)):
        unknown = sorted(set(subset.labels) - set(classes)) if subset else []
        if unknown:
            raise GraftcvError(f"The {name} data has classes not in training: {', '.join(unknown[:5])}.")
    return classes


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """One warning naming the files left out because they are not usable images."""
    if skipped:
        names = "; ".join(f"{Path(p).name} ({reason})" for p, reason in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        log.warning("Skipped %d file(s) that are not usable images: %s%s.", len(skipped), names, more)


def evenly_spaced(items: list, limit: int | None) -> list:
    """At most `limit` items, evenly spaced over the list (first and last included), so that every class folder
    of a sorted listing is represented."""
    if not limit or limit >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(limit - 1, 1))] for i in range(limit)]


def read_labelled(data: str | Path) -> tuple[ImageSet, list[tuple[str, str]]]:
    """Labelled images of one folder (ROOT/CLASS/*) or CSV, for evaluation; unusable files skipped."""
    source = Path(data).expanduser()
    if not source.exists():
        raise GraftcvError(f"Data path {source} does not exist.")
    split = _find_split_dir(source, "test") if source.is_dir() else None
    images, unsupported = _read_source(split or source)
    images, repeated = drop_repeated_paths(images)
    _warn_duplicates({"repeated_paths": repeated, "identical_files": 0, "copies_dropped": 0})
    skipped = [(str(p), f"not a supported image type ({p.suffix or 'no suffix'})") for p in unsupported]
    images = _drop_unreadable(images, skipped)
    if len(images) == 0:
        raise GraftcvError(f"No labelled images found in {source}: expected CLASS/image files or a CSV.")
    return images, skipped


def list_images(target: str | Path | list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Unlabelled images to predict: files given directly, or every image under a folder."""
    targets = target if isinstance(target, list) else [target]
    candidates: list[Path] = []
    for item in targets:
        path = Path(item).expanduser()
        if not path.exists():
            raise GraftcvError(f"Image path {path} does not exist.")
        if path.is_dir():
            candidates.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        else:
            candidates.append(path)
    images = ImageSet(candidates, [""] * len(candidates))
    skipped = [(str(p), "not a supported image type") for p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES]
    images = images.subset([i for i, p in enumerate(candidates) if p.suffix.lower() in IMAGE_SUFFIXES])
    images = _drop_unreadable(images, skipped)
    if len(images) == 0:
        raise GraftcvError(f"No readable images found in {', '.join(str(t) for t in targets)}.")
    return images.paths, skipped
