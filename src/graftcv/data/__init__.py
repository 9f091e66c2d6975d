"""Data: discovery of images and labels, validation, splits, transforms and loaders."""

import importlib

# Imported on first use (PEP 562), as in the package itself: discovery and image decoding need no torch, so the
# torch-free paths (graftcv.lite, the CLI's listing of images) import them without paying for the loaders.
_EXPORTS = {
    "DataSplits": "discovery",
    "ImageSet": "discovery",
    "discover": "discovery",
    "evenly_spaced": "discovery",
    "list_images": "discovery",
    "read_labelled": "discovery",
    "warn_skipped": "discovery",
    "load_rgb": "images",
    "ImageDataset": "loaders",
    "inference_workers": "loaders",
    "make_loader": "loaders",
    "build_transform": "transforms",
    "decode_size": "transforms",
    "ShardManifest": "shards",
    "ShardSplit": "shards",
    "is_shard_source": "shards",
    "iter_samples": "shards",
    "read_index": "shards",
    "read_manifest": "shards",
    "shuffle_buffer_for": "shards",
    "write_shards": "shard_writer",
    "ShardImageStream": "shard_stream",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graftcv.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"graftcv.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
