"""Frozen-backbone features: pooled embeddings streamed to memory-mapped files and cached per image on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftcv.atomic import write_json
from graftcv.config import cache_root
from graftcv.data import ImageDataset, build_transform, decode_size, inference_workers, make_loader
from graftcv.data.images import DECODER_VERSION
from graftcv.feature_onnx import OnnxFeatures, check_against_torch, open_or_export
from graftcv.progress import image_progress

log = logging.getLogger("graftcv")


def default_cache_dir() -> Path:
    return cache_root() / "features"


def space_key(model_id: dict, data_config: dict) -> str:
    """One cache folder per backbone, weights and preprocessing: a new size or backbone never hits."""
    text = json.dumps({"model": model_id, "data": data_config, "decoder": DECODER_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_identity(path: Path) -> str:
    """A file as the cache knows it: where it is, how long it is, when it last changed."""
    stat = path.stat()
    return f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"


@dataclass
class FeatureStats:
    """What the last extraction did: images computed and read from the cache, and its speed."""

    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    runtime: str = "torch"  # what computed them: torch, or onnx (onnxruntime)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


class FeatureStore:
    """Per-image cache for one feature space: shards of rows (`<id>.npy`) with their file identities (`<id>.json`).

    Any later request, whether the same images, a subset (a fold, a few shots) or a superset, reads the rows
    it finds and computes only the rest. Shards are written to a temporary name and renamed, and their index
    last, so a crash or a concurrent run never leaves a half shard that others would read.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index: dict[str, tuple[str, int]] = {}
        self.digests: dict[str, str | None] = {}  # shard → the SHA-256 its index recorded
        self.verified: set[str] = set()
        if directory.is_dir():
            for meta in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns):
                try:
                    record = json.loads(meta.read_text())
                    identities = record["files"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a foreign or damaged index: its rows are simply recomputed
                self.digests[meta.stem] = record.get("sha256")
                self.index.update({identity: (meta.stem, row) for row, identity in enumerate(identities)})

    def drop_damaged(self, shard_ids: set[str]) -> int:
        """Check each shard against the SHA-256 written with it (once per store); a shard that differs, is
        truncated or has none is deleted, so its rows are computed again. Returns how many were deleted: the
        caller then reads the index afresh, since older shards may hold some of those rows."""
        damaged = []
        for shard_id in sorted(shard_ids - self.verified):
            path = self.directory / f"{shard_id}.npy"
            try:
                intact = self.digests.get(shard_id) == _sha256(path)
            except OSError:
                intact = False
            if intact:
                self.verified.add(shard_id)
            else:
                damaged.append(shard_id)
        for shard_id in damaged:
            (self.directory / f"{shard_id}.npy").unlink(missing_ok=True)
            (self.directory / f"{shard_id}.json").unlink(missing_ok=True)
        if damaged:
            log.warning("%d damaged feature-cache file(s) in %s: computing them again.", len(damaged), self.directory)
        return len(damaged)

    def lookup(self, identities: list[str]) -> list[tuple[str, int] | None]:
        return [self.index.get(identity) for identity in identities]

    def shard(self, shard_id: str) -> np.ndarray:
        return np.load(self.directory / f"{shard_id}.npy", mmap_mode="r")

    def new_shard(self, rows: int, dim: int) -> tuple[str, np.memmap, Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sweep_partials()
        shard_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        partial = self.directory / f".{shard_id}.{os.getpid()}@{_host()}.partial.npy"
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(rows, dim))
        try:  # reserve the disk space now: a full disk is then an OSError here, not a SIGBUS mid-pass
            with partial.open("r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, partial.stat().st_size)
        except AttributeError:
            pass  # no posix_fallocate (macOS, Windows)
        except OSError:
            del out
            partial.unlink(missing_ok=True)
            raise
        return shard_id, out, partial

    def sweep_partials(self) -> int:
        """Delete shards left half-written by passes whose process is gone (killed, or the machine stopped);
        each partial file's name carries its writer's PID. Returns how many went."""
        swept = 0
        for partial in self.directory.glob(".*.partial.npy"):
            pid, _, host = partial.name.split(".")[-3].partition("@")
            if host and host != _host():  # another machine's pass on a shared cache (multi-node): not ours to judge
                continue
            if not pid.isdigit() or not _alive(int(pid)):
                partial.unlink(missing_ok=True)
                swept += 1
        return swept

    def commit(self, shard_id: str, partial: Path, identities: list[str], meta: dict) -> None:
        digest = _sha256(partial)  # written with the entry: a shard altered later is caught on its next read
        os.replace(partial, self.directory / f"{shard_id}.npy")
        write_json(self.directory / f"{shard_id}.json", {**meta, "sha256": digest, "files": identities})
        self.index.update({identity: (shard_id, row) for row, identity in enumerate(identities)})
        self.digests[shard_id] = digest
        self.verified.add(shard_id)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return pid != 0


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@torch.inference_mode()
def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The classifier's input: the backbone's pooled, pre-logits features (eval mode)."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def _compute_into(
    out: np.ndarray,
    model: nn.Module,
    paths: Sequence[Path],
    data_config: dict,
    batch_size: int,
    num_workers: int | None,
    progress: bool,
    description: str,
    runner: OnnxFeatures | None = None,
) -> str:
    """Stream the pooled features of `paths` into `out` row by row (eval mode, channels_last, no autograd), on
    onnxruntime when `runner` is given and agrees with PyTorch on the first batch; returns the runtime used."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)  # about 1.4x faster convolutions on CPUs
    dataset = ImageDataset(paths, None, build_transform(data_config), draft_size=decode_size(data_config))
    workers = inference_workers(onnx=runner is not None) if num_workers is None else num_workers
    loader = make_loader(dataset, batch_size=batch_size, num_workers=workers)
    start = 0
    try:
        with image_progress(progress) as bar:
            task = bar.add_task(description, total=len(paths))
            for images, _ in loader:
                if runner is not None:
                    batch = runner(images.numpy())
                    if not runner.checked:
                        reference = pooled_features(model, images.contiguous(memory_format=torch.channels_last))
                        if not check_against_torch(runner, reference.float().numpy(), batch):
                            runner, batch = None, reference.float().numpy()
                else:
                    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                    batch = pooled_features(model, images).float().cpu().numpy()
                out[start : start + len(batch)] = batch
                start += len(batch)
                bar.advance(task, len(batch))
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return "onnx" if runner is not None else "torch"


def extract_features(
    model: nn.Module,
    paths: Sequence[Path],
    data_config: dict,
    model_id: dict,
    batch_size: int = 64,
    num_workers: int | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    description: str = "features",
    stats: FeatureStats | None = None,
    onnx: bool = True,
) -> np.ndarray:
    """Pooled features of every image, shape (n, model.num_features), float32.

    New rows stream into a memory-mapped shard, so memory does not grow with the number of images; every
    image already seen with the same backbone, weights and preprocessing (and unchanged on disk) is read
    from the cache instead of recomputed. `stats`, when given, receives what was computed and how fast.
    On a CPU, with `onnx`, new rows come from onnxruntime (see `graftcv.feature_onnx`), PyTorch otherwise.
    """
    stats = stats if stats is not None else FeatureStats()
    paths = [Path(p) for p in paths]
    store = FeatureStore((cache_dir or default_cache_dir()) / space_key(model_id, data_config))
    identities = [file_identity(p) for p in paths]
    if use_cache and store.drop_damaged({hit[0] for hit in store.lookup(identities) if hit is not None}):
        store = FeatureStore(store.directory)  # the damaged shards' rows may stand in older ones
    found = store.lookup(identities) if use_cache else [None] * len(paths)
    missing = [i for i, hit in enumerate(found) if hit is None]
    stats.computed, stats.cached = len(missing), len(paths) - len(missing)

    if missing:
        started = time.perf_counter()
        shard_id, out, partial = store.new_shard(len(missing), model.num_features)
        on_cpu = next(model.parameters()).device.type == "cpu"
        size = tuple(data_config["input_size"])
        runner = open_or_export(model, size, store.directory, len(missing)) if onnx and on_cpu else None
        try:
            stats.runtime = _compute_into(
                out,
                model,
                [paths[i] for i in missing],
                data_config,
                batch_size,
                num_workers,
                progress,
                description,
                runner,
            )
            out.flush()
            del out
            store.commit(shard_id, partial, [identities[i] for i in missing], {"model": model_id})
        finally:
            partial.unlink(missing_ok=True)
        stats.seconds = time.perf_counter() - started
        found = store.lookup(identities)

    shards = {shard_id for shard_id, _ in found}
    if len(shards) == 1:  # the usual case, a rerun on the same images: hand out the memory map itself
        shard = store.shard(shards.pop())
        rows = [row for _, row in found]
        if rows == list(range(len(shard))):
            return shard
        return np.asarray(shard[rows])
    features = np.empty((len(paths), model.num_features), dtype=np.float32)
    for shard_id in shards:
        shard = store.shard(shard_id)
        positions = [i for i, (s, _) in enumerate(found) if s == shard_id]
        features[positions] = shard[[found[i][1] for i in positions]]
    return features


@torch.inference_mode()
def stream_features(
    model: nn.Module,
    split,
    classes: list[str],
    data_config: dict,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: bool = True,
    rank: int = 0,
    world: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, pooled features) of this rank's share of a shard split, streamed in PyTorch. Not cached: the
    per-image cache keys files by path, size and time, which images inside a shard do not have."""
    from graftcv.data.shard_sets import ordered

    device = next(model.parameters()).device
    was_training = model.training
    model.eval().to(memory_format=torch.channels_last)
    stream = ordered(split, classes, build_transform(data_config), decode_size(data_config), rank, world)
    loader = make_loader(stream, batch_size, num_workers=inference_workers() if num_workers is None else num_workers)
    positions, rows = [], []
    try:
        with image_progress(progress) as bar:
            task = bar.add_task(f"features {split.name}", total=len(stream))
            for images, _, where in loader:
                images = images.to(device).contiguous(memory_format=torch.channels_last)
                rows.append(pooled_features(model, images).float().cpu().numpy())
                positions.append(where.numpy())
                bar.advance(task, len(images))
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    dim = model.num_features
    return np.concatenate(positions) if positions else np.zeros(0, int), np.concatenate(rows) if rows else np.zeros(
        (0, dim), np.float32
    )


def uncached(paths: Sequence[Path], data_config: dict, model_id: dict, cache_dir: Path | None = None) -> int:
    """How many of these images `extract_features` would have to compute (the others are in the cache)."""
    store = FeatureStore((cache_dir or default_cache_dir()) / space_key(model_id, data_config))
    return sum(hit is None for hit in store.lookup([file_identity(Path(p)) for p in paths]))


def network_id(network: nn.Module, name: str) -> dict:
    """What the feature cache knows a backbone by: its name and the fingerprint of its weights, classifier excepted."""
    from graftcv.backbones import classifier_param_names

    return {"name": name, "weights": model_fingerprint(network, classifier_param_names(network, True))}


def model_fingerprint(model: nn.Module, exclude: set[str] = frozenset()) -> str:
    """SHA-256 over the backbone's tensors (not its classifier): the weights themselves key the cache."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name not in exclude:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]
