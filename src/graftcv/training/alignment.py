"""Domain alignment losses between source and target features (unsupervised domain adaptation), one
registration each: `dann` (a domain discriminator behind a gradient-reversal layer), `mmd` (multi-kernel MMD, as
in DAN) and `coral` (deep CORAL). The losses and the reversal layer are skada's; graftcv adds the schedule.
Listing and checking the names imports no torch: the modules are `training.aligners`', imported on first use."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from graftcv.registry import Registry, lazy

ALIGNMENTS: Registry = Registry("adaptation method")
SOURCE_ONLY = "source-only"  # no alignment: the baseline every method is measured against


@dataclass(frozen=True)
class Alignment:
    name: str
    help: str
    build: Callable  # feature dimension → a module called as (source, target, progress) → (loss, logs)


def register_alignment(alignment: Alignment) -> Alignment:
    return ALIGNMENTS.register(alignment)


def ramp(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's weight schedule, 0 at the start of training to 1 at the end: 2 / (1 + e^(-γp)) - 1."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


register_alignment(
    Alignment(
        "dann",
        "Domain-adversarial: a discriminator behind gradient reversal",
        lazy("graftcv.training.aligners:adversarial"),
    )
)
register_alignment(
    Alignment("mmd", "Multi-kernel maximum mean discrepancy (DAN)", lazy("graftcv.training.aligners:mmd"))
)
register_alignment(Alignment("coral", "Deep CORAL: align feature covariances", lazy("graftcv.training.aligners:coral")))
