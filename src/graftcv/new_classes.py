"""`graftcv add-class`: a new class for a trained `prototype` or `linear-probe` model from a handful of images,
without touching the backbone: the head gets one more row, computed from the new images' features."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from graftcv.data import list_images, warn_skipped
from graftcv.errors import GraftcvError
from graftcv.features import extract_features, network_id
from graftcv.heads.ops import TensorHead, affine
from graftcv.model import Model, load

log = logging.getLogger("graftcv")


def _features(model: Model, paths: list[Path]) -> torch.Tensor:
    """The new images' pooled features through the feature pass `fit` uses (a probe model's backbone is the
    pretrained one, so they usually come from the cache)."""
    backbone = model.network.backbone
    found = extract_features(backbone, paths, model.data_config, network_id(backbone, model.meta["backbone"]),
                             progress=False)  # fmt: skip
    return torch.from_numpy(np.array(found, dtype=np.float32))  # a copy: cached features are read-only memory maps


def _refusal(model: Model) -> str | None:
    """Why this model cannot take a class, or None when it can."""
    strategy = model.meta.get("strategy")
    if model.meta.get("tasks"):
        return ("add-class adds a class to a model with one label per image; for several labels per image, add the "
                "label to the CSV and train again.")  # fmt: skip
    if model.network is None or model.network.probe is None:
        return (f"{strategy or 'this'} model's classifier was trained with its backbone, so a new class needs "
                "training again: add the class folder to the data and run graftcv train, or train a prototype or "
                "linear-probe model, which can take new classes.")  # fmt: skip
    ops = model.network.probe.ops
    if len(ops) < 2 or ops[-1]["op"] != "softmax" or ops[-2]["op"] != "affine":
        return (f"The {model.meta.get('head') or strategy} head does not end in one linear layer per class, so it "
                "cannot take a new class: retrain with the class added, or use a prototype or linear-probe model "
                "with a linear head (logreg, svm).")  # fmt: skip
    return None


def add_class(
    model_dir: str | Path, images: str | Path, name: str | None = None, out: str | Path | None = None
) -> dict:
    """Add the class of the images in `images` (named after the folder unless `name`) to the model in
    `model_dir`, saved to `out` (default: in place, atomically). Returns the record added to graftcv.json.

    A prototype head gets the new class's centroid (centred on the stored training mean, L2-normalized, as the
    others were). A linear head gets an imprinted row (Qi, Brown & Lowe 2018): the mean of the new images'
    transformed features, scaled to the mean norm of the other rows, with their mean bias."""
    model = load(model_dir)
    reason = _refusal(model)
    if reason is not None:
        raise GraftcvError(reason)
    folder = Path(images).expanduser()
    name = name or folder.name
    if name in model.classes:
        raise GraftcvError(f"The model already has a class {name!r}: choose another --name.")
    paths, skipped = list_images([str(folder)])  # none readable: list_images says so
    warn_skipped(skipped)
    head = model.network.probe
    transform = TensorHead(head.ops[:-2])  # everything before the class rows
    mapped = transform(_features(model, paths))
    last = head.ops[-2]
    weight, bias = last["weight"], last["bias"]
    direction = mapped.mean(0)
    direction = direction / direction.norm().clamp_min(1e-12)
    norms = weight.norm(dim=1)
    scale = norms[norms > 0].mean()  # a binary linear head stores one row of zeros
    prototype = model.meta.get("strategy") == "prototype"  # its rows have no bias; an imprinted row takes theirs
    offset, how = (0.0, "prototype centroid") if prototype else (float(bias.mean()), "imprinted weights")
    row = (direction * scale).numpy()
    new_affine = affine(np.vstack([weight.numpy(), row[None]]), np.append(bias.numpy(), offset))
    model.network.probe = TensorHead([*head.ops[:-2], new_affine, head.ops[-1]])
    record = {"class": name, "images": len(paths), "method": how, "from": str(folder.resolve()),
              "added": datetime.now().isoformat(timespec="seconds")}  # fmt: skip
    model.classes.append(name)
    model.meta["classes"] = model.classes
    model.meta["added_classes"] = [*model.meta.get("added_classes", []), record]
    model.save(out if out is not None else model_dir)
    log.info("added class %r from %d images (%s)", name, len(paths), how)
    return record
