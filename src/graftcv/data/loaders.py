"""Torch datasets and loaders over image paths; a file that fails late becomes a blank image, not a crash."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from graftcv.data.images import load_rgb


class ImageDataset(Dataset):
    """(image tensor, target) pairs; target is -1 for unlabelled images."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int] | None,
        transform: Callable,
        draft_size: int | None = None,
    ) -> None:
        self.paths = list(paths)
        self.targets = list(targets) if targets is not None else [-1] * len(self.paths)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image = load_rgb(self.paths[index], self.draft_size)
        except (OSError, ValueError) as error:
            # Files were checked at discovery; one that changed since must not kill a long epoch.
            warnings.warn(f"Could not read {self.paths[index]} ({error}); using a blank image.", stacklevel=2)
            image = Image.new("RGB", (self.draft_size or 224,) * 2, (128, 128, 128))
        return self.transform(image), self.targets[index]


def default_workers() -> int:
    """Decoding workers: leave one core to the model; none on a single-core machine."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def inference_workers(onnx: bool = False) -> int:
    """Decoding workers for a forward-only pass. PyTorch's threads use every core, so a worker process pays
    only where cores are left over: on 2 cores, decoding inline measured 30.8 img/s against 28.5 with one
    worker (EfficientNet-Lite0, 224 px, ants_bees). onnxruntime leaves more room: one worker measured 55.5
    img/s against 51.1 inline (flowers5, 224 px; bench/RESULTS.md, issue 15)."""
    cores = os.cpu_count() or 1
    return default_workers() if onnx or cores > 2 else 0


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int | None = None,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    workers = default_workers() if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
    )
