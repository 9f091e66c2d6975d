"""Data: discovery of images and labels, validation, splits, transforms and loaders."""

from graftcv.data.discovery import (
    DataSplits,
    ImageSet,
    discover,
    evenly_spaced,
    list_images,
    read_labelled,
    warn_skipped,
)
from graftcv.data.images import load_rgb
from graftcv.data.loaders import ImageDataset, inference_workers, make_loader
from graftcv.data.transforms import build_transform, decode_size

__all__ = [
    "DataSplits",
    "ImageDataset",
    "ImageSet",
    "build_transform",
    "decode_size",
    "discover",
    "evenly_spaced",
    "list_images",
    "read_labelled",
    "warn_skipped",
    "inference_workers",
    "load_rgb",
    "make_loader",
]
