"""Freezing mechanics: which layer groups train in an epoch of a phase, and each group's learning rate."""

from __future__ import annotations

from torch import nn

from graftcv.training.phase import Phase


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
