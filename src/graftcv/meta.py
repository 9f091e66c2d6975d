"""graftcv.json read and checked without torch: the artifact's file names, its format version and its checks."""

from __future__ import annotations

import json
from pathlib import Path

from graftcv.errors import GraftcvError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "graftcv.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later open with PROTO
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's container, which holds a pickle
MAX_SIDE = 4096  # pixels per side of the network input


def previous(directory: Path) -> Path:
    """Where a save keeps the model it replaces until the new one is in place."""
    return directory.with_name(f".{directory.name}.old")


def refuse_pickle(path: Path, head: bytes = b"") -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES or head.startswith((PICKLE_MAGIC, ZIP_MAGIC)):
        raise GraftcvError(
            f"{path} is a pickle-based file, which can run code when loaded; graftcv loads only its own "
            "artifacts (model.safetensors + graftcv.json)."
        )


def read_meta(path: str | Path) -> tuple[Path, dict]:
    """The artifact directory (a path to a file inside it is accepted) and its checked graftcv.json."""
    directory = Path(path).expanduser()
    if directory.is_file():
        refuse_pickle(directory)
        directory = directory.parent
    elif not directory.exists() and previous(directory).is_dir():
        raise GraftcvError(
            f"{directory} is missing but {previous(directory).name} beside it holds the model of an interrupted "
            "save: rename it back, or save again."
        )
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise GraftcvError(f"{directory} is not a graftcv model: {META_FILE} and {WEIGHTS_FILE} are needed.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraftcvError(f"{meta_path} is not valid JSON.") from None
    problem = meta_problem(meta)
    if problem:
        raise GraftcvError(f"{meta_path} is not a usable graftcv description: {problem}.")
    return directory, meta


def meta_problem(meta: object) -> str | None:
    """Why a parsed graftcv.json is not one this graftcv reads, or None."""
    if not isinstance(meta, dict):
        return "it is not a JSON object"
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return f"format version {version!r} is not one this graftcv reads (up to {FORMAT_VERSION})"
    if not isinstance(meta.get("backbone"), str):
        return "the backbone name is missing"
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        return "the class list is missing"
    data_config = meta.get("data_config")
    size = data_config.get("input_size") if isinstance(data_config, dict) else None
    if not isinstance(size, list) or len(size) != 3 or not all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in size):
        return "the input size is missing or implausible"
    if not isinstance(meta.get("weights_sha256"), str):
        return "the SHA-256 of the weights is missing"
    return None
