"""The model artifact: a directory with model.safetensors and graftcv.json; no pickle, saved atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from graftcv.atomic import fsync_path, os_errors, write_json
from graftcv.data.tasks import Layout
from graftcv.ensembles import Ensemble, MemberInput
from graftcv.errors import GraftcvError
from graftcv.heads.ops import TensorHead, activate_segments
from graftcv.meta import FORMAT_VERSION, META_FILE, WEIGHTS_FILE, meta_problem, read_meta
from graftcv.meta import previous as _previous
from graftcv.meta import refuse_pickle as _refuse_pickle
from graftcv.model_card import CARD_FILE, card_text, write_card


class Classifier(nn.Module):
    """Images → class probabilities: a timm network, optionally followed by an exported probe head.

    `segments` ([start, stop, softmax|sigmoid] per task): the activation of a multi-label or multi-task network's
    logits in place of one softmax (a probe head ends in its own)."""

    def __init__(self, backbone: nn.Module, probe: TensorHead | None = None, segments: list | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.probe = probe
        self.segments = segments if probe is None else None

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The network's logits as probabilities (no probe head)."""
        logits = logits.float()
        return activate_segments({"segments": self.segments}, logits) if self.segments else logits.softmax(-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.backbone(images)
        return self.probe(out) if self.probe is not None else self.activate(out)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_artifact(directory: str | Path, backbone: nn.Module, meta: dict, probe: TensorHead | None = None) -> Path:
    """Write the artifact into a temporary sibling directory, then swap it in: a crash never leaves half."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    meta = dict(meta, format_version=FORMAT_VERSION, kind="probe" if probe is not None else "classifier")
    if probe is not None:
        probe_tensors, meta["probe"] = probe.state()
        tensors.update(probe_tensors)
    elif isinstance(getattr(backbone, "pretrained_cfg", None), dict):
        meta["timm"] = timm_meta(backbone.pretrained_cfg, meta)
    return write_artifact(directory, tensors, meta)


def timm_meta(pretrained_cfg: dict, meta: dict) -> dict:
    """What `timm.create_model` needs to rebuild this network from `graftcv export --format timm`'s state dict:
    the architecture, the class count, the classifier's name and the preprocessing as timm's pretrained_cfg
    (pass it as `pretrained_cfg_overlay` with the file, so that timm keeps the classifier it would otherwise
    drop for a class count unlike ImageNet's)."""
    data = meta.get("data_config") or {}
    cfg = {
        key: data[key] for key in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode") if key in data
    }
    cfg |= {"num_classes": len(meta["classes"]), "classifier": pretrained_cfg.get("classifier", "classifier")}
    return {"architecture": meta["backbone"], "num_classes": len(meta["classes"]), "label_names": list(meta["classes"]),
            "pretrained_cfg": cfg}  # fmt: skip


MEMBER_FIELDS = ("backbone", "kind", "classes", "data_config", "probe", "strategy", "head", "weights_source", "source")


def save_ensemble(directory: str | Path, ensemble: Ensemble, meta: dict, members: list[dict]) -> Path:
    """An ensemble as one artifact: member i's tensors under `memberI.`, its description in `members[i]`."""
    tensors, described = {}, []
    for i, (member, member_meta) in enumerate(zip(ensemble.members, members, strict=True)):
        state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in member.backbone.state_dict().items()}
        entry = {k: member_meta[k] for k in MEMBER_FIELDS if k in member_meta}
        if member.probe is not None:
            probe_tensors, entry["probe"] = member.probe.state()
            state.update(probe_tensors)
        entry["kind"] = "probe" if member.probe is not None else "classifier"
        tensors.update({f"member{i}.{k}": v for k, v in state.items()})
        described.append(entry)
    meta = dict(meta, format_version=FORMAT_VERSION, kind="ensemble", members=described, weights=ensemble.weights)
    return write_artifact(directory, tensors, meta)


def write_artifact(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_save(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        with os_errors(directory / WEIGHTS_FILE):
            save_file(tensors, str(staging / WEIGHTS_FILE))
        meta["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        (staging / CARD_FILE).write_text(card_text(meta, {}, {}))  # a run rewrites it with its data and scores
        for path in (staging / WEIGHTS_FILE, staging / META_FILE, staging):
            fsync_path(path)  # the new files are on disk before any rename makes them the model
        if directory.exists():
            old = _previous(directory)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            try:
                os.replace(staging, directory)
            except BaseException:
                os.replace(old, directory)  # put the previous model back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
        fsync_path(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _recover_interrupted_save(directory: Path) -> None:
    """A process killed between the two renames of a save leaves only `.NAME.old`: that is the model."""
    old = _previous(directory)
    if not directory.exists() and (old / META_FILE).is_file() and (old / WEIGHTS_FILE).is_file():
        os.replace(old, directory)


def update_meta(directory: str | Path, **fields: object) -> dict:
    """Add or replace top-level fields of graftcv.json, atomically (a temporary file, then a rename)."""
    directory, meta = read_meta(directory)
    meta.update(fields)
    write_json(directory / META_FILE, meta)
    write_card(directory)
    return meta


def _is_safetensors(raw: bytes) -> bool:
    """The format's own framing: an 8-byte little-endian header length, then that many bytes of JSON."""
    if len(raw) < 10:
        return False
    (length,) = struct.unpack("<Q", raw[:8])
    return 8 + length <= len(raw) and raw[8:9] == b"{"


def read_artifact(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of an artifact, after checking it is ours, pickle-free and intact.

    The weights are read into memory once, and that same copy is hashed and parsed: nothing can swap the
    file between the check and the use."""
    directory, meta = read_meta(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise GraftcvError(f"{directory} is not a graftcv model: {META_FILE} and {WEIGHTS_FILE} are needed.")
    raw = weights_path.read_bytes()
    if not _is_safetensors(raw):
        _refuse_pickle(weights_path, raw[:4])
    if hashlib.sha256(raw).hexdigest() != meta["weights_sha256"]:
        raise GraftcvError(f"{weights_path} does not match the checksum in {META_FILE}: it was altered or truncated.")
    try:
        tensors = load_safetensors(raw)
    except Exception as error:  # safetensors raises its own error type for corrupt headers
        raise GraftcvError(f"{weights_path} is not a readable safetensors file ({error}).") from None
    return tensors, meta


def build_classifier(tensors: dict[str, torch.Tensor], meta: dict) -> Classifier | Ensemble:
    """Rebuild the network from the architecture name in the metadata and the stored tensors."""
    if meta.get("kind") == "ensemble":
        return build_ensemble(tensors, meta)
    probe = meta.get("kind") == "probe"
    try:
        backbone = timm.create_model(
            meta["backbone"], pretrained=False, num_classes=0 if probe else len(meta["classes"])
        )
    except RuntimeError:  # timm's "Unknown model"
        raise GraftcvError(f"The artifact's backbone {meta['backbone']!r} is not a timm model.") from None
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        backbone.load_state_dict(state)
        head = TensorHead.from_state(tensors, meta["probe"]) if probe else None  # unknown ops: GraftcvError
    except (RuntimeError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise GraftcvError(f"The artifact's tensors do not fit a {meta['backbone']} ({str(error)[:200]}).") from None
    layout = Layout.from_meta(meta.get("tasks"))
    if layout is not None and layout.outputs != list(meta["classes"]):
        raise GraftcvError("The artifact's task layout does not match its class list.")
    return Classifier(backbone, head, layout.segments() if layout is not None else None).eval()


def build_ensemble(tensors: dict[str, torch.Tensor], meta: dict) -> Ensemble:
    """Each member rebuilt from its own tensors and description, behind the input adapter it needs."""
    members, weights = meta.get("members"), meta.get("weights")
    if not isinstance(members, list) or not isinstance(weights, list) or len(members) != len(weights) or not members:
        raise GraftcvError("The artifact's ensemble description (members and weights) is malformed.")
    networks, inputs = [], []
    for i, member in enumerate(members):
        prefix = f"member{i}."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if not isinstance(member, dict) or member.get("kind") not in ("probe", "classifier"):
            raise GraftcvError(f"Member {i} of the ensemble is not a classifier this graftcv reads.")
        problem = meta_problem(member | {"weights_sha256": ""})
        if problem:
            raise GraftcvError(f"Member {i} of the ensemble is not usable: {problem}.")
        if member["classes"] != meta["classes"]:
            raise GraftcvError(f"Member {i} of the ensemble has other classes than the ensemble.")
        networks.append(build_classifier(own, member))
        inputs.append(MemberInput(meta["data_config"], member["data_config"]))
    return Ensemble(networks, inputs, [float(w) for w in weights]).eval()
