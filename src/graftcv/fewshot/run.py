"""`graftcv fewshot`: every few-shot method on the same episodes of one labelled set, on frozen pretrained features
computed once (and cached), with mean accuracy, its 95% interval and the seconds each method took."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graftcv.atomic import write_csv, write_json, write_text
from graftcv.backbones import DEFAULT_MODEL, create_backbone
from graftcv.compare.protocol import parse_list, pooled_images
from graftcv.compare.stats import summarize
from graftcv.errors import GraftcvError
from graftcv.features import extract_features, network_id
from graftcv.fewshot.episodes import sample_episodes
from graftcv.fewshot.methods import FEWSHOT_METHODS
from graftcv.progress import image_progress
from graftcv.rundir import data_name, default_run_dir

DEFAULT_METHODS = tuple(FEWSHOT_METHODS)
COLUMNS = ["shots", "method", "transductive", "episodes", "accuracy", "ci_low", "ci_high", "std", "seconds"]


@dataclass
class FewShotResult:
    """One row per shot level × method; `out_dir` holds fewshot.json, fewshot.csv and fewshot.md."""

    rows: list[dict]
    settings: dict
    out_dir: Path | None = None
    classes: list[str] = field(default_factory=list)


def pretrained_features(paths: list[Path], model: str, size: int | None, weights: str | None, cache: bool,
                        progress: bool, pretrained: bool = True) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Pooled features of the pretrained backbone (the same cached pass `fit` uses) and its preprocessing."""
    backbone = create_backbone(model, 2, pretrained, weights, size=size)
    network = backbone.model
    found = extract_features(network, paths, backbone.data_config, network_id(network, model), use_cache=cache,
                             progress=progress)  # fmt: skip
    return np.asarray(found), backbone.data_config


def _shot_levels(shots: str | Iterable[int]) -> list[int]:
    try:
        levels = [int(s) for s in parse_list(shots if isinstance(shots, str) else map(str, shots))]
    except ValueError:
        raise GraftcvError(f"--shots takes comma-separated whole numbers, e.g. 1,5, not {shots!r}.") from None
    if not levels or min(levels) < 1:
        raise GraftcvError("--shots needs one or more positive image counts, e.g. 1,5.")
    return levels


def fewshot(
    data: str | Path,
    ways: int = 5,
    shots: str | Iterable[int] = (1, 5),
    queries: int = 15,
    episodes: int = 600,
    methods: str | Iterable[str] = DEFAULT_METHODS,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    size: int | None = None,
    weights: str | None = None,
    out: str | Path | None = None,
    cache: bool = True,
    progress: bool = True,
    pretrained: bool = True,
) -> FewShotResult:
    """N-way K-shot evaluation of every method on the same `episodes` episodes (fixed by `seed`) per shot level:
    classes drawn per episode from the data's, `queries` query images per class never in the support set.
    `pretrained=False`: random weights (smoke tests only)."""
    names = parse_list(methods)
    for name in names:
        FEWSHOT_METHODS.lookup(name)
    if not names:
        raise GraftcvError(f"--methods needs at least one of {', '.join(FEWSHOT_METHODS)}.")
    if episodes < 1:
        raise GraftcvError("--episodes must be at least 1.")
    levels = _shot_levels(shots)
    images = pooled_images(data)
    classes = sorted(set(images.labels))
    labels = np.array([classes.index(label) for label in images.labels])
    plans = {k: sample_episodes(labels, ways, k, queries, episodes, seed, classes) for k in levels}  # checks first
    features, data_config = pretrained_features(images.paths, model, size, weights, cache, progress, pretrained)
    rows = []
    for k, drawn in plans.items():
        for name in names:
            method = FEWSHOT_METHODS[name]
            correct, started = [], time.perf_counter()
            with image_progress(progress, unit="episodes") as bar:
                task = bar.add_task(f"{ways}-way {k}-shot · {name}", total=len(drawn))
                for episode in drawn:
                    scores = method.scores(features[episode.support], episode.support_labels, features[episode.query])
                    correct.append(float((scores.argmax(1) == episode.query_labels).mean()))
                    bar.advance(task)
            stat = summarize(correct)
            rows.append({"shots": k, "method": name, "transductive": method.transductive, "episodes": len(drawn),
                         "accuracy": stat["mean"], "ci_low": stat["ci_low"], "ci_high": stat["ci_high"],
                         "std": stat["std"], "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
    settings = {"data": str(data), "ways": ways, "shots": levels, "queries": queries, "episodes": episodes,
                "methods": names, "seed": seed, "model": model, "size": data_config["input_size"][-1],
                "weights": weights, "images": len(labels), "classes": classes}  # fmt: skip
    out_dir = Path(out) if out is not None else default_run_dir("fewshot", data_name(data))
    result = FewShotResult(rows, settings, out_dir, classes)
    write_json(out_dir / "fewshot.json", {"settings": settings, "rows": rows})
    write_csv(out_dir / "fewshot.csv", COLUMNS, rows)
    write_text(out_dir / "fewshot.md", markdown(result))
    return result


def markdown(result: FewShotResult) -> str:
    s = result.settings
    lines = [f"{s['ways']}-way, {s['queries']} queries per class, {s['episodes']} episodes per shot level (seed "
             f"{s['seed']}), {s['model']} at {s['size']} px, features frozen. Transductive methods also read the "
             "unlabelled queries.", "", "| shots | method | accuracy (95% CI) | s / episodes |",
             "|---:|---|---:|---:|"]  # fmt: skip
    for row in result.rows:
        name = f"{row['method']} (transductive)" if row["transductive"] else row["method"]
        half = (row["ci_high"] - row["ci_low"]) / 2 if row["episodes"] > 1 else float("nan")
        lines.append(f"| {row['shots']} | {name} | {100 * row['accuracy']:.2f} ± {100 * half:.2f} | "
                     f"{row['seconds']:.1f} / {row['episodes']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
