"""A labelled image set: paths with their class names, in a stable order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graftcv.data.shards import ShardSplit


@dataclass
class ImageSet:
    """Image paths with their class names, in a stable order."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    # set when the images live in WebDataset shards (`graftcv.data.shard_sets`): paths are then the images' names,
    # and loaders stream the shards instead of opening the paths
    stream: ShardSplit | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def targets(self, classes: list[str]) -> list[int]:
        index = {name: i for i, name in enumerate(classes)}
        return [index[label] for label in self.labels]

    def subset(self, indices: list[int]) -> ImageSet:
        return ImageSet([self.paths[i] for i in indices], [self.labels[i] for i in indices])
