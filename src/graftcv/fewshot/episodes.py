"""N-way K-shot episodes, as index arrays into one labelled set.

Drawn as easyfsl's TaskSampler draws them (classes uniformly from the sorted class ids, then distinct images per
class with the random module), written out here because easyfsl 1.5's sampler cannot be built on torch >= 2.2:
its constructor passes `data_source` to `torch.utils.data.Sampler`, which no longer takes one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graftcv.errors import GraftcvError


@dataclass(frozen=True)
class Episode:
    """`classes`: the set's class ids in the episode's order (episode label i is classes[i]); `support` and
    `query`: indices into the set, class by class (ways × shots, ways × queries)."""

    classes: tuple[int, ...]
    support: np.ndarray
    query: np.ndarray

    @property
    def support_labels(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.classes)), len(self.support) // len(self.classes))

    @property
    def query_labels(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.classes)), len(self.query) // len(self.classes))


def check_episode_shape(labels: Sequence[int], ways: int, shots: int, queries: int, names: Sequence[str]) -> None:
    """One sentence when the set cannot give such episodes: too few classes, or a class with too few images."""
    if min(ways, shots, queries) < 1:
        raise GraftcvError("--ways, --shots and --queries must be at least 1.")
    counts = Counter(int(label) for label in labels)
    if ways > len(counts):
        raise GraftcvError(f"--ways {ways} needs {ways} classes; the data has {len(counts)}.")
    eligible = [c for c, n in counts.items() if n >= shots + queries]
    if len(eligible) < len(counts):
        short = min(counts, key=counts.get)
        raise GraftcvError(
            f"--shots {shots} + --queries {queries} needs {shots + queries} images in every class; "
            f"{names[short]!r} has {counts[short]}."
        )


def sample_episodes(labels: Sequence[int], ways: int, shots: int, queries: int, episodes: int, seed: int = 0,
                    names: Sequence[str] | None = None) -> list[Episode]:  # fmt: skip
    """`episodes` episodes fixed by `seed`: per episode, `ways` classes drawn uniformly, then per class `shots` +
    `queries` distinct images (so no query image is ever in its episode's support set)."""
    names = names or [str(c) for c in sorted(set(labels))]
    check_episode_shape(labels, ways, shots, queries, names)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    draw = random.Random(seed)
    found = []
    for _ in range(episodes):
        classes = draw.sample(sorted(members), ways)
        grid = np.array([draw.sample(members[c], shots + queries) for c in classes])
        found.append(Episode(tuple(classes), grid[:, :shots].ravel(), grid[:, shots:].ravel()))
    return found
