"""Lightning checkpoints without pickle: every tensor in one safetensors file, the rest as JSON in its header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from graftcv.atomic import os_errors, replacing
from graftcv.errors import GraftcvError

STRUCTURE_KEY = "graftcv.checkpoint"


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """A JSON-able copy of `value`; tensors move to `tensors` under their path, tuples and int-keyed dicts
    are tagged so they come back as they were."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().clone().contiguous()  # safetensors refuses shared storage
        return {"__tensor__": path}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, tensors, f"{path}/{k}") for k, v in value.items()}}
        return {"__items__": [[k, _encode(v, tensors, f"{path}/{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path} without pickle")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {k: _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write a nested state atomically: a killed process leaves the previous file, never half of one."""
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors, "s"))
    with replacing(path) as staging, os_errors(path):
        save_file(tensors, str(staging), metadata={STRUCTURE_KEY: structure})


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            structure = (handle.metadata() or {}).get(STRUCTURE_KEY)
        if structure is None:
            raise GraftcvError(f"{path} is not a graftcv checkpoint.")
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as error:
        raise GraftcvError(f"Cannot read the checkpoint {path}: {error}") from None
    return _decode(json.loads(structure), tensors)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning's checkpoint plugin interface, storing with `save_state`/`load_state` instead of torch.save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_state(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_state(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
