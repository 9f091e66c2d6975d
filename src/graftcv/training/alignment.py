"""Domain alignment losses between source and target features (unsupervised domain adaptation), one
registration each: `dann` (a domain discriminator behind a gradient-reversal layer), `mmd` (multi-kernel MMD, as
in DAN) and `coral` (deep CORAL). The losses and the reversal layer are skada's; graftcv adds the schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from graftcv.registry import Registry

ALIGNMENTS: Registry = Registry("adaptation method")


@dataclass(frozen=True)
class Alignment:
    name: str
    help: str
    build: Callable[[int], nn.Module]  # feature dimension → a module (source, target, progress) → (loss, logs)


def register_alignment(alignment: Alignment) -> Alignment:
    return ALIGNMENTS.register(alignment)


def ramp(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's weight schedule, 0 at the start of training to 1 at the end: 2 / (1 + e^(-γp)) - 1."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


def reverse_gradient(features: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The identity forward; the gradient multiplied by -coefficient backward."""
    from skada.deep.modules import GradientReversalLayer

    return GradientReversalLayer.apply(features, coefficient)


class AdversarialAlignment(nn.Module):
    """DANN: the discriminator learns to tell source from target features while the reversed gradient teaches
    the backbone to make them indistinguishable. Written here rather than skada's DomainClassifier, whose
    softmax over a single output is constant (it would give the discriminator nothing to learn from)."""

    def __init__(self, features: int, hidden: int = 256) -> None:
        super().__init__()
        self.discriminator = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 1)
        )  # fmt: skip

    def forward(self, source: torch.Tensor, target: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict]:
        features = reverse_gradient(torch.cat([source, target]), ramp(progress))
        logits = self.discriminator(features).squeeze(-1)
        domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(logits.device)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, domains)
        accuracy = ((logits > 0).float() == domains).float().mean()
        return loss, {"domain_acc": accuracy}


class DiscrepancyAlignment(nn.Module):
    """A statistical distance between the two feature batches (no parameters), weighted by the same ramp."""

    def __init__(self, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, source: torch.Tensor, target: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict]:
        value = self.distance(source.float(), target.float())
        return ramp(progress) * value, {"discrepancy": value.detach()}


def _mmd(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from skada.deep.losses import dan_loss

    return dan_loss(source, target)


def _coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from skada.deep.losses import deepcoral_loss

    return deepcoral_loss(source, target)


register_alignment(
    Alignment("dann", "Domain-adversarial: a discriminator behind gradient reversal", AdversarialAlignment)
)
register_alignment(
    Alignment("mmd", "Multi-kernel maximum mean discrepancy (DAN)", lambda _: DiscrepancyAlignment(_mmd))
)
register_alignment(Alignment("coral", "Deep CORAL: align feature covariances", lambda _: DiscrepancyAlignment(_coral)))
