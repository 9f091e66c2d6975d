"""`export --format timm`: the network as timm's own files (a state dict and config.json), loadable by timm alone."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from graftcv.artifact import read_artifact, timm_meta
from graftcv.atomic import write_text
from graftcv.errors import GraftcvError
from graftcv.model_card import CARD_FILE

TIMM_DIR = "timm"
TIMM_WEIGHTS = "model.safetensors"


def export_timm(model_dir: str | Path, out: str | Path | None = None) -> Path:
    """MODEL/timm/ (or `out`): model.safetensors with timm's own tensor names, config.json in the layout of timm
    models on the Hugging Face Hub (architecture, num_classes, label_names, pretrained_cfg) and the model card.
    Load it with `timm.create_model(ARCH, pretrained=True, num_classes=C, pretrained_cfg_overlay={"file": ...,
    "num_classes": C})`. A probe's scikit-learn head and an ensemble's several networks are not one timm model."""
    tensors, meta = read_artifact(model_dir)
    kind = meta.get("kind")
    if kind == "ensemble":
        raise GraftcvError("An ensemble holds several networks: export each member with --format timm.")
    if kind == "probe":
        raise GraftcvError(
            "A linear-probe model ends in its scikit-learn head, which timm does not hold: export it to ONNX, or "
            "train with a gradient strategy (head, finetune) for a timm classifier."
        )
    described = meta.get("timm") or timm_meta({}, meta)
    target = Path(out) if out else Path(model_dir) / TIMM_DIR
    target.mkdir(parents=True, exist_ok=True)
    state = {k.removeprefix("model."): v.contiguous() for k, v in tensors.items() if k.startswith("model.")}
    staging = target / f".{TIMM_WEIGHTS}.partial"
    save_file(state, str(staging), metadata={"format": "pt"})
    staging.replace(target / TIMM_WEIGHTS)
    write_text(target / "config.json", json.dumps(described, indent=2))
    card = Path(model_dir) / CARD_FILE
    if card.is_file():
        write_text(target / CARD_FILE, card.read_text())
    return target
