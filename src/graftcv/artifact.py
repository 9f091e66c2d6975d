"""The model artifact: a directory with model.safetensors and graftcv.json; no pickle, saved atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from graftcv.errors import GraftcvError
from graftcv.heads import TensorHead

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "graftcv.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}


class Classifier(nn.Module):
    """Images → class probabilities: a timm network, optionally followed by an exported probe head."""

    def __init__(self, backbone: nn.Module, probe: TensorHead | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.probe = probe

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.backbone(images)
        return self.probe(out) if self.probe is not None else out.float().softmax(-1)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_artifact(directory: str | Path, backbone: nn.Module, meta: dict, probe: TensorHead | None = None) -> Path:
    """Write the artifact into a temporary sibling directory, then swap it in: a crash never leaves half."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    meta = dict(meta, format_version=FORMAT_VERSION, kind="probe" if probe is not None else "classifier")
    if probe is not None:
        probe_tensors, meta["probe"] = probe.state()
        tensors.update(probe_tensors)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE))
        meta["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_artifact(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of an artifact, after checking it is ours, pickle-free and intact."""
    directory = Path(directory).expanduser()
    if directory.is_file():
        if directory.suffix.lower() in PICKLE_SUFFIXES:
            raise GraftcvError(
                f"{directory} is a pickle-based file; graftcv loads only its own artifacts "
                "(model.safetensors + graftcv.json), which cannot run code."
            )
        directory = directory.parent
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise GraftcvError(f"{directory} is not a graftcv model: {META_FILE} and {WEIGHTS_FILE} are needed.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraftcvError(f"{meta_path} is not valid JSON.") from None
    expected = meta.get("weights_sha256")
    if expected and sha256_file(weights_path) != expected:
        raise GraftcvError(f"{weights_path} does not match the checksum in {META_FILE}: it was altered or truncated.")
    try:
        tensors = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error type for corrupt headers
        raise GraftcvError(f"{weights_path} is not a readable safetensors file ({error}).") from None
    return tensors, meta


def build_classifier(tensors: dict[str, torch.Tensor], meta: dict) -> Classifier:
    """Rebuild the network from the architecture name in the metadata and the stored tensors."""
    probe = meta.get("kind") == "probe"
    backbone = timm.create_model(meta["backbone"], pretrained=False, num_classes=0 if probe else len(meta["classes"]))
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    backbone.load_state_dict(state)
    head = TensorHead.from_state(tensors, meta["probe"]) if probe else None
    return Classifier(backbone, head).eval()
