"""`graftcv zeroshot`: classes with no training images, recognised from an attribute table through ESZSL on frozen
pretrained features; unseen-class accuracy against chance, and the generalized setting (seen and unseen classes
both candidates: seen accuracy, unseen accuracy, their harmonic mean)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftcv.atomic import write_json, write_text
from graftcv.backbones import DEFAULT_MODEL
from graftcv.compare.protocol import parse_list, pooled_images
from graftcv.errors import GraftcvError
from graftcv.fewshot.run import pretrained_features
from graftcv.heads.eszsl import choose_and_fit, mean_class_accuracy
from graftcv.rundir import data_name, default_run_dir


@dataclass
class ZeroShotResult:
    scores: dict
    settings: dict
    out_dir: Path


def read_attributes(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, attribute names, one row of numbers per class) from CSV `class,ATTR,...`."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise GraftcvError(f"Attribute table {source} does not exist.")
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "class" or len(rows[0]) < 2:
        raise GraftcvError(f"{source}: the first row must be class,ATTRIBUTE,... (one attribute column at least).")
    header, names, values = [h.strip() for h in rows[0]], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise GraftcvError(f"{source}, line {line}: {len(row)} fields where the header has {len(header)}.")
        try:
            values.append([float(cell) for cell in row[1:]])
        except ValueError:
            raise GraftcvError(f"{source}, line {line}: attribute values must be numbers (0/1 or real).") from None
        names.append(row[0].strip())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraftcvError(f"{source}: class {duplicates[0]!r} has more than one row.")
    return names, header[1:], np.array(values, dtype=np.float64)


def _split_seen(targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(targets))
    return train_test_split(indices, test_size=fraction, stratify=targets, random_state=seed)


def zeroshot(
    data: str | Path,
    attributes: str | Path,
    unseen: str | Iterable[str],
    model: str = DEFAULT_MODEL,
    size: int | None = None,
    weights: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    out: str | Path | None = None,
    cache: bool = True,
    progress: bool = True,
    pretrained: bool = True,
) -> ZeroShotResult:
    """ESZSL trained on the seen classes' images (less a stratified `test_fraction` kept to score them), then
    scored on every image of the `unseen` classes, which training never saw."""
    images = pooled_images(data)
    classes = sorted(set(images.labels))
    names, attribute_names, table = read_attributes(attributes)
    missing = [c for c in classes if c not in names]
    if missing:
        raise GraftcvError(f"{attributes} has no row for class {missing[0]!r} (every class of the data needs one).")
    held = parse_list(unseen)
    unknown = [c for c in held if c not in classes]
    if unknown or not held:
        raise GraftcvError(f"--unseen takes classes of the data ({', '.join(classes)}), not {unknown or held}.")
    seen = [c for c in classes if c not in held]
    if len(seen) < 2:
        raise GraftcvError("Zero-shot training needs at least two seen classes: hold fewer out with --unseen.")
    if not 0 < test_fraction < 1:
        raise GraftcvError("--test-fraction must be between 0 and 1.")
    order = seen + held  # candidate index: seen classes first
    vectors = table[[names.index(c) for c in order]]
    labels = np.array([order.index(label) for label in images.labels])
    features, data_config = pretrained_features(images.paths, model, size, weights, cache, progress, pretrained)
    is_seen = labels < len(seen)
    seen_rows = np.flatnonzero(is_seen)
    train, test = (seen_rows[i] for i in _split_seen(labels[seen_rows], test_fraction, seed))
    fitted = choose_and_fit(features[train], labels[train], vectors[: len(seen)], seed)
    unseen_rows = np.flatnonzero(~is_seen)
    unseen_only = len(seen) + fitted.scores(features[unseen_rows], vectors[len(seen) :]).argmax(1)
    everything = fitted.scores(features, vectors).argmax(1)
    seen_accuracy = mean_class_accuracy(everything[test], labels[test])
    unseen_accuracy = mean_class_accuracy(everything[unseen_rows], labels[unseen_rows])
    harmonic = 0.0 if seen_accuracy + unseen_accuracy == 0 else (
        2 * seen_accuracy * unseen_accuracy / (seen_accuracy + unseen_accuracy))  # fmt: skip
    scores = {
        "unseen_accuracy": mean_class_accuracy(unseen_only, labels[unseen_rows]),
        "chance": 1.0 / len(held),
        "generalized": {"seen_accuracy": seen_accuracy, "unseen_accuracy": unseen_accuracy, "harmonic_mean": harmonic},
        "seen_test_images": len(test),
        "unseen_images": len(unseen_rows),
        "train_images": len(train),
        "gamma": fitted.gamma,
        "lambda": fitted.lam,
    }
    settings = {"data": str(data), "attributes": str(attributes), "attribute_names": attribute_names,
                "seen": seen, "unseen": held, "model": model, "size": data_config["input_size"][-1], "seed": seed,
                "test_fraction": test_fraction}  # fmt: skip
    out_dir = Path(out) if out is not None else default_run_dir("zeroshot", data_name(data))
    write_json(out_dir / "zeroshot.json", {"settings": settings, "scores": scores})
    result = ZeroShotResult(scores, settings, out_dir)
    write_text(out_dir / "zeroshot.md", markdown(result))
    return result


def markdown(result: ZeroShotResult) -> str:
    s, g = result.scores, result.scores["generalized"]
    return (
        f"ESZSL on {result.settings['model']} features; seen: {', '.join(result.settings['seen'])}; unseen: "
        f"{', '.join(result.settings['unseen'])} (γ = {s['gamma']:g}, λ = {s['lambda']:g} by leave-classes-out CV)\n\n"
        f"- unseen classes only: accuracy {100 * s['unseen_accuracy']:.1f}% (chance {100 * s['chance']:.1f}%) on "
        f"{s['unseen_images']} images\n"
        f"- generalized (every class a candidate): seen {100 * g['seen_accuracy']:.1f}% on {s['seen_test_images']} "
        f"held-out images, unseen {100 * g['unseen_accuracy']:.1f}%, harmonic mean {100 * g['harmonic_mean']:.1f}%\n"
        "(accuracies are per-class means)\n"
    )
