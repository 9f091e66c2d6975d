"""A phase: one stretch of gradient training with fixed freezing rules, as strategies plan them."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Phase:
    """One stretch of gradient training with fixed freezing rules.

    `trainable`: layer groups that train, counted from the top (the classifier is group 1); None = all.
    `lr_decay`: each group further from the head gets this factor more (discriminative LRs).
    `on_features`: train the classifier alone on cached pooled features instead of images.
    `unfreeze_every`: progressive unfreezing, one more group every this many epochs.
    `sizes`: training input size of each epoch (progressive resizing); empty: the loader's size throughout.
    """

    name: str
    epochs: int
    lr: float
    trainable: int | None = None
    lr_decay: float = 1.0
    on_features: bool = False
    unfreeze_every: int = 0
    sizes: tuple[int, ...] = ()

    def size_at(self, epoch: int) -> int | None:
        """This epoch's training input size, None where the phase does not resize."""
        return self.sizes[min(epoch, len(self.sizes) - 1)] if self.sizes else None


CYCLE_PREFIX = "cycle"


def with_cycles(phases: list[Phase], cycles: int) -> list[Phase]:
    """The plan with its last image phase repeated as `cycles` learning-rate cycles (snapshot ensembles, Huang et al.
    2017): each repeat restarts the schedule from the weights the cycle before ended with."""
    last = max(i for i, p in enumerate(phases) if not p.on_features)
    repeats = [replace(phases[last], name=f"{CYCLE_PREFIX}{k}") for k in range(2, cycles + 1)]
    return [*phases[: last + 1], *repeats, *phases[last + 1 :]]


def first_cycle(phases: list[Phase]) -> int:
    """The index of the first snapshot cycle: the last image phase before the repeats."""
    repeats = [i for i, p in enumerate(phases) if p.name.startswith(CYCLE_PREFIX)]
    return repeats[0] - 1 if repeats else max(i for i, p in enumerate(phases) if not p.on_features)
