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
    """

    name: str
    epochs: int
    lr: float
    trainable: int | None = None
    lr_decay: float = 1.0
    on_features: bool = False
    unfreeze_every: int = 0
