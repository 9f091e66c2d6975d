"""Shards back into a CLASS/ folder, once per shard set: for `compare`, which draws its own folds by index."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from graftcv.config import cache_root
from graftcv.data.shards import iter_samples, manifest_location, open_url, read_manifest


def unpacked_dir() -> Path:
    return cache_root() / "shards"


def unpack(source: str | Path, into: Path | None = None) -> Path:
    """Every split's images as ROOT/CLASS/SPLIT-KEY.EXT, streamed out of the shards and kept (keyed by the
    manifest's location and content) so a second compare reads the folder at once. compare trains folds x strategies
    models, for data that fits a folder; training on data that does not streams the shards instead (`train`)."""
    location = manifest_location(source)
    with open_url(location) as handle:
        digest = hashlib.sha256(location.encode() + b"\0" + handle.read()).hexdigest()[:24]
    root = (into or unpacked_dir()) / digest
    if root.is_dir():
        return root
    manifest = read_manifest(source)
    staging = root.with_name(f".{digest}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for name, split in manifest.splits.items():
        for sample in iter_samples(split):
            folder = staging / sample.label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}-{sample.key}.{sample.ext}").write_bytes(sample.image)
    staging.replace(root)  # whole or not at all: a killed unpack leaves only its partial folder
    return root
