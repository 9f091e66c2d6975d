"""A labelled image set: paths with their class names, in a stable order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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
    # several labels per image (multi-label or multi-task data, `graftcv.data.tasks`): each label is the ';'-joined
    # names of the image's positive outputs, and the targets are 0/1 rows
    multi: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        if self.multi:  # images per output
            return dict(sorted(Counter(n for label in self.labels for n in label.split(";") if n).items()))
        return dict(sorted(Counter(self.labels).items()))

    def targets(self, classes: list[str]) -> list[int] | np.ndarray:
        """Each image's class index, or with several labels per image its 0/1 row over `classes`."""
        index = {name: i for i, name in enumerate(classes)}
        if self.multi:
            rows = np.zeros((len(self.labels), len(classes)), dtype=np.float32)
            for row, label in enumerate(self.labels):
                rows[row, [index[n] for n in label.split(";") if n]] = 1.0
            return rows
        return [index[label] for label in self.labels]

    def subset(self, indices: list[int]) -> ImageSet:
        return ImageSet([self.paths[i] for i in indices], [self.labels[i] for i in indices], multi=self.multi)
