"""A phase: one stretch of gradient training with fixed freezing rules, as strategies plan them."""

from __future__ import annotations

from dataclasses import dataclass


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
