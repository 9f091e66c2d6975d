"""The second data stream of domain adaptation: unlabelled target images beside each source batch."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from graftcv import distributed
from graftcv.config import TrainConfig
from graftcv.data import ImageDataset, make_loader


def with_target(source, config: TrainConfig, transform, size: int, micro: int):
    """Each source batch paired with as many unlabelled target images: the target folder's images only (any class
    folders in it are never read as labels), drawn without replacement, cycled when the target set is smaller and
    cut when it is larger, so that an epoch is one pass over the source, as it is for source-only (the same
    optimizer steps for every method)."""
    from lightning.pytorch.utilities import CombinedLoader
    from torch.utils.data import RandomSampler

    from graftcv.data import list_images

    paths, _ = list_images([config.target])
    target_set = ImageDataset(paths, np.zeros(len(paths), dtype=np.int64), transform, size)
    generator = torch.Generator().manual_seed(config.seed + distributed.rank())
    sampler = RandomSampler(target_set, num_samples=len(source.sampler), generator=generator)
    target = make_loader(target_set, micro, num_workers=config.num_workers, sampler=sampler, drop_last=source.drop_last)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of torch's pytree
        return CombinedLoader({"source": source, "target": target}, mode="max_size_cycle")
