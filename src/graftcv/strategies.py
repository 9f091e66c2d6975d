"""Strategies by name: what trains, for how long and at which learning rate; one `register_strategy` call each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from graftcv.config import TrainConfig
from graftcv.registry import Registry
from graftcv.training.phase import Phase

if TYPE_CHECKING:
    import numpy as np

    from graftcv.heads.ops import TensorHead


__all__ = ["STRATEGIES", "Phase", "Strategy", "StrategySettings", "plan", "register_strategy"]


@dataclass(frozen=True)
class StrategySettings:
    """The knobs every strategy's plan reads; defaults already resolved."""

    epochs: int
    head_epochs: int
    lr: float
    head_lr: float
    lr_decay: float
    unfreeze: int
    unfreeze_every: int
    augment: str


@dataclass(frozen=True)
class Strategy:
    """One strategy, whole.

    `plan(settings)`: the gradient phases, in order ([] for closed-form strategies).
    `epochs`, `lr`: its defaults for the main phase (frozen-backbone heads take larger steps than whole networks).
    `defaults`: other `TrainConfig` settings it wants unless the caller sets them (a recipe).
    `fixed`: settings it cannot run without; a caller setting them otherwise is an error.
    `fit_head(features, targets, n_classes, config)`: for closed-form strategies, the head fitted on cached
    features of the frozen backbone. `head_name(config)`: what the artifact records as its head.
    `tunable`: the settings `compare --tune` may vary for it.
    """

    name: str
    help: str
    plan: Callable[[StrategySettings], list[Phase]]
    epochs: int = 0
    lr: float = 0.0
    defaults: Mapping[str, object] = field(default_factory=dict)
    fixed: Mapping[str, object] = field(default_factory=dict)
    fit_head: Callable[[np.ndarray, np.ndarray, int, TrainConfig], TensorHead] | None = None
    head_name: Callable[[TrainConfig], str] | None = None
    tunable: tuple[str, ...] = ("lr", "epochs")

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    @property
    def closed_form(self) -> bool:
        return self.fit_head is not None

    def settings(self, config: TrainConfig) -> StrategySettings:
        """The plan's knobs from a validated config, this strategy's epochs and lr where it gives none."""
        lr = self.lr if config.lr in (None, "auto") else float(config.lr)
        return StrategySettings(
            epochs=config.epochs or self.epochs,
            head_epochs=config.head_epochs,
            lr=lr,
            head_lr=config.head_lr,
            lr_decay=config.lr_decay,
            unfreeze=config.unfreeze,
            unfreeze_every=config.unfreeze_every,
            augment=config.augment,
        )


STRATEGIES: Registry[Strategy] = Registry("strategy")
register_strategy = STRATEGIES.register


def plan(strategy: str, settings: StrategySettings) -> list[Phase]:
    return STRATEGIES.lookup(strategy).plan(settings)


def _no_phases(s: StrategySettings) -> list[Phase]:
    return []


def _sklearn_head(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig) -> TensorHead:
    from graftcv.heads.export import fit_probe

    return fit_probe(config.head, x, y, n_classes, seed=config.seed, pca=config.pca)


def _prototype_head(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig) -> TensorHead:
    from graftcv.heads.prototype import fit_prototype

    return fit_prototype(x, y, n_classes)


def _finetune(s: StrategySettings) -> list[Phase]:
    """fastai's fine_tune: the new head first (here on cached features, so it costs almost nothing),
    then every layer with learning rates that shrink from the head down to the stem."""
    return [
        Phase("head", s.head_epochs, s.head_lr, trainable=1, on_features=True),
        Phase("finetune", s.epochs, s.lr, lr_decay=s.lr_decay),
    ]


register_strategy(
    Strategy(
        "linear-probe",
        "Frozen backbone; a scikit-learn head (--head) on cached features",
        _no_phases,
        fit_head=_sklearn_head,
        head_name=lambda c: c.head,
        tunable=(),
    )
)
register_strategy(
    Strategy(
        "prototype",
        "Frozen backbone; nearest class centroid of the cached features (no training)",
        _no_phases,
        fit_head=_prototype_head,
        head_name=lambda c: "prototype",
        tunable=(),
    )
)
register_strategy(
    Strategy(
        "head",
        "Frozen backbone, a new head trained with gradient descent",
        lambda s: [Phase("head", s.epochs, s.head_lr, trainable=1, on_features=s.augment == "none")],
        epochs=15,
        lr=3e-3,
    )
)
register_strategy(
    Strategy(
        "partial",
        "Head plus the last --unfreeze backbone groups",
        lambda s: [Phase("partial", s.epochs, s.lr, trainable=1 + s.unfreeze, lr_decay=s.lr_decay)],
        epochs=8,
        lr=1e-3,
        tunable=("lr", "epochs", "unfreeze"),
    )
)
register_strategy(Strategy("full", "All layers", lambda s: [Phase("full", s.epochs, s.lr)], epochs=8, lr=3e-4))
register_strategy(
    Strategy(
        "progressive",
        "Head first, one more group every --unfreeze-every epochs",
        lambda s: [
            Phase("progressive", s.epochs, s.lr, trainable=1, lr_decay=s.lr_decay, unfreeze_every=s.unfreeze_every)
        ],
        epochs=8,
        lr=1e-3,
    )
)
register_strategy(
    Strategy(
        "finetune",
        "Default: head on cached features, then all layers with discriminative LRs (--lr-decay)",
        _finetune,
        epochs=5,
        lr=3e-4,
    )
)
# From scratch: the same architecture, random weights, and what random weights need. 30 epochs: a random-init
# network has no features to reuse and is still improving long after the 5-8 epochs of fine-tuning. lr 3e-3:
# 10x the fine-tuning LR, which is kept small only to preserve pretrained features (one-cycle warms up to it,
# so it is stable). Strong augmentation: a random-init network memorizes a few hundred images quickly.
# BatchNorm statistics train (frozen ones would be the random init's 0/1), and patience 10, because a
# from-scratch validation curve is noisy for many epochs.
register_strategy(
    Strategy(
        "scratch",
        "Baseline: random init, all layers, a recipe for it (30 epochs, lr 3e-3, strong augmentation)",
        lambda s: [Phase("full", s.epochs, s.lr)],
        epochs=30,
        lr=3e-3,
        defaults={"augment": "strong", "bn": "train", "patience": 10},
        fixed={"pretrained": False, "weights": None, "freeze_stem": False},
    )
)
