"""Strategies: small objects that decide which layer groups train, for how long and at which learning rate."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from graftcv.errors import GraftcvError


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


@dataclass(frozen=True)
class StrategySettings:
    """The knobs every strategy reads; defaults already resolved by the API."""

    epochs: int
    head_epochs: int
    lr: float
    head_lr: float
    lr_decay: float
    unfreeze: int
    unfreeze_every: int
    augment: str


def linear_probe(s: StrategySettings) -> list[Phase]:
    return []  # no gradient phase: features + a scikit-learn head


def head_only(s: StrategySettings) -> list[Phase]:
    return [Phase("head", s.epochs, s.head_lr, trainable=1, on_features=s.augment == "none")]


def partial(s: StrategySettings) -> list[Phase]:
    return [Phase("partial", s.epochs, s.lr, trainable=1 + s.unfreeze, lr_decay=s.lr_decay)]


def full(s: StrategySettings) -> list[Phase]:
    return [Phase("full", s.epochs, s.lr)]


def progressive(s: StrategySettings) -> list[Phase]:
    return [Phase("progressive", s.epochs, s.lr, trainable=1, lr_decay=s.lr_decay, unfreeze_every=s.unfreeze_every)]


def finetune(s: StrategySettings) -> list[Phase]:
    """fastai's fine_tune: the new head first (here on cached features, so it costs almost nothing),
    then every layer with learning rates that shrink from the head down to the stem."""
    return [
        Phase("head", s.head_epochs, s.head_lr, trainable=1, on_features=True),
        Phase("finetune", s.epochs, s.lr, lr_decay=s.lr_decay),
    ]


STRATEGIES = {
    "linear-probe": linear_probe,
    "head": head_only,
    "partial": partial,
    "full": full,
    "progressive": progressive,
    "finetune": finetune,
    "prototype": linear_probe,  # no gradient phase either: nearest class centroid on the features
}

# Strategies fitted in closed form on cached features of the frozen backbone, with no gradient phase.
FEATURE_HEAD_STRATEGIES = ("linear-probe", "prototype")

# Per-strategy defaults: (epochs, lr). Frozen-backbone heads take larger steps than whole networks.
DEFAULTS = {
    "linear-probe": (0, 0.0),
    "head": (15, 3e-3),
    "partial": (8, 1e-3),
    "full": (8, 3e-4),
    "progressive": (8, 1e-3),
    "finetune": (5, 3e-4),
    "prototype": (0, 0.0),
}


def plan(strategy: str, settings: StrategySettings) -> list[Phase]:
    if strategy not in STRATEGIES:
        raise GraftcvError(f"Unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}.")
    return STRATEGIES[strategy](settings)


def trainable_groups(phase: Phase, n_groups: int, epoch: int = 0) -> int:
    """How many groups from the top train in this epoch of the phase."""
    count = n_groups if phase.trainable is None else min(phase.trainable, n_groups)
    if phase.unfreeze_every:
        count = min(n_groups, count + epoch // phase.unfreeze_every)
    return count


def set_trainable(model: nn.Module, groups: list[list[str]], n_trainable: int) -> None:
    """requires_grad on the top `n_trainable` groups only."""
    live = {name for group in groups[len(groups) - n_trainable :] for name in group}
    for name, param in model.named_parameters():
        param.requires_grad_(name in live)


def group_learning_rates(phase: Phase, n_groups: int) -> list[float]:
    """LR per group, stem first: the head gets `phase.lr`, each group below `lr_decay` times the one above."""
    return [phase.lr * phase.lr_decay ** (n_groups - 1 - i) for i in range(n_groups)]
