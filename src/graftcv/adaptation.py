"""`graftcv.adapt`: train on labelled source images with unlabelled target images beside them (an alignment loss
on the same Lightning module as `fit`), then measure the domain shift before and after, and the target accuracy
when target labels are given for evaluation."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from graftcv.atomic import write_bytes, write_json
from graftcv.data import evenly_spaced, list_images
from graftcv.errors import GraftcvError
from graftcv.evaluation.domains import proxy_a_distance
from graftcv.features import extract_features, network_id
from graftcv.fitting import fit
from graftcv.outcomes import Run
from graftcv.rundir import write_evaluation
from graftcv.training.alignment import ALIGNMENTS, SOURCE_ONLY

log = logging.getLogger("graftcv")
METHODS = (SOURCE_ONLY, *ALIGNMENTS, "self-training")
SHIFT_IMAGES = 400  # images per domain for the domain-shift measure and the feature plot


@dataclass
class Adapted:
    """The run, the domain shift before and after (proxy A-distance), and the target metrics (when labelled)."""

    run: Run
    shift: dict
    target_report: dict | None


def _features(network: nn.Module, paths: list[str], data_config: dict, name: str, cache: bool) -> np.ndarray:
    """Pooled features through the feature pass `fit` uses (the pretrained backbone's are cached already)."""
    found = extract_features(network, [Path(p) for p in paths], data_config, network_id(network, name), use_cache=cache,
                             progress=False)  # fmt: skip
    return np.asarray(found)


def _pretrained(config: dict) -> nn.Module:
    from graftcv.backbones import create_backbone

    backbone = create_backbone(config["model"], 2, config["pretrained"], config["weights"], config["dropout"],
                               config["drop_path"], size=config["size"])  # fmt: skip
    return backbone.model


def _feature_plot(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]) -> bytes:
    """Two PCA panels, source and target features before and after adaptation."""
    from sklearn.decomposition import PCA

    from graftcv.pages import figure_png, new_figure

    figure = new_figure(9, 4)
    for index, (title, (source, target)) in enumerate((("before", before), ("after", after))):
        points = PCA(n_components=2, random_state=0).fit_transform(np.concatenate([source, target]))
        axes = figure.add_subplot(1, 2, index + 1)
        axes.scatter(*points[: len(source)].T, s=6, alpha=0.5, label="source")
        axes.scatter(*points[len(source) :].T, s=6, alpha=0.5, label="target")
        axes.set_title(f"features {title} training (PCA)")
        axes.legend(loc="best")
    return figure_png(figure)


def adapt(
    source: str | Path,
    target: str | Path,
    out: str | Path | None = None,
    method: str = "dann",
    target_labels: str | Path | None = None,
    **settings,
) -> Adapted:
    """Train on `source` (labelled, as `fit` takes it) with the images of `target` (unlabelled: any class
    folders inside are ignored); `target_labels` (a labelled folder or CSV of target images) is read only after
    training, to score the model."""
    if method not in METHODS:
        raise GraftcvError(f"Unknown adaptation method {method!r}: choose one of {', '.join(METHODS)}.")
    started = time.perf_counter()
    target_paths, _ = list_images([str(target)])  # no images: list_images says so
    rounds = None
    if method == "self-training":
        from graftcv.self_training import self_train

        # target= with no alignment: each round keeps its best fine-tuning epoch, as source-only does here
        run, rounds = self_train(source, target_paths, out, target_labels, target=str(target), **settings)
    else:
        run = fit(source, out=out, target=str(target), adaptation=method, **settings)
    if run.model is None:  # another rank of a multi-process run
        return Adapted(run, {}, None)
    data_config = run.model.data_config
    source_paths = evenly_spaced([str(p) for p in list_images([str(source)])[0]], SHIFT_IMAGES)
    target_sample = evenly_spaced([str(p) for p in target_paths], SHIFT_IMAGES)
    pretrained, adapted, name = _pretrained(run.config), run.model.network.backbone, run.config["model"]
    before = tuple(_features(pretrained, p, data_config, name, True) for p in (source_paths, target_sample))
    after = tuple(_features(adapted, p, data_config, name, False) for p in (source_paths, target_sample))
    shift = {"before": proxy_a_distance(*before), "after": proxy_a_distance(*after)}
    write_bytes(run.out_dir / "domain_features.png", _feature_plot(before, after))
    report = None
    if target_labels is not None:
        report = run.model.evaluate(target_labels)
        write_evaluation(report, run.out_dir, prefix="target_")
    summary = {"method": method, "target": str(target), "target_images": len(target_paths), "domain_shift": shift}
    if rounds is not None:
        summary["self_training"] = rounds
    if report is not None:
        summary |= {"target_labels": str(target_labels), "target_accuracy": report["accuracy"]}
        summary["target_macro_f1"] = report["macro_f1"]
    summary["seconds"] = round(time.perf_counter() - started, 1)  # every self-training round and the measures too
    write_json(run.out_dir / "adaptation.json", summary)
    return Adapted(run, shift, report)
