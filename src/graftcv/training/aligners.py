"""The domain-alignment modules the registry in `training.alignment` names: a discriminator behind a
gradient-reversal layer, and parameter-free discrepancies. The losses and the reversal layer are skada's."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from graftcv.training.alignment import ramp


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


def adversarial(features: int) -> nn.Module:
    return AdversarialAlignment(features)


def mmd(features: int) -> nn.Module:
    return DiscrepancyAlignment(_mmd)


def coral(features: int) -> nn.Module:
    return DiscrepancyAlignment(_coral)
