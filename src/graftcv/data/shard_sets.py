"""Shards as training data: a manifest's splits as `DataSplits`, and ordered streams that say where each image is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from graftcv.data.discovery import DataSplits
from graftcv.data.sets import ImageSet
from graftcv.data.shard_stream import ShardImageStream
from graftcv.data.shards import ShardSplit, manifest_location, read_index, read_manifest
from graftcv.errors import GraftcvError


def shard_splits(source: str | Path) -> DataSplits:
    """The train, val (and test) splits `graftcv shard` wrote. Each set's names and labels come from its index
    (one CSV per split, about 100 bytes an image); the images stay in the shards until a loader streams them."""
    manifest = read_manifest(source)
    sets: dict[str, ImageSet] = {}
    for name, split in manifest.splits.items():
        rows = read_index(split)
        if len(rows) != len(split):
            raise GraftcvError(f"The {name} index lists {len(rows)} images, the manifest {len(split)}: shard again.")
        sets[name] = ImageSet([Path(n) for _, n, _ in rows], [label for *_, label in rows], stream=split)
    if "train" not in sets or "val" not in sets:
        raise GraftcvError(f"{source} holds no train and val shards: write them with `graftcv shard DATA --out DIR`.")
    splits = DataSplits.from_sets(sets["train"], sets["val"], sets.get("test"), source=manifest_location(source))
    splits.layout, splits.val_source = "shards", "shards"
    return splits


class PositionedStream(ShardImageStream):
    """(image, target, position in the split) in no guaranteed order (ranks and workers share it out): the
    position puts validation outputs and features back in the split's order once gathered."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, int]]:
        for sample in self.samples():
            yield self.transform(self._image(sample)), self.index[sample.label], int(sample.key)


def ordered(split: ShardSplit, classes: list[str], transform, draft_size: int | None, rank: int, world: int):
    """This rank's share of a split for an ordered pass (validation, features, the test split)."""
    return PositionedStream(split, classes, transform, draft_size=draft_size, rank=rank, world=world)
