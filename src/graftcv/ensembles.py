"""Ensembles as one network: members' probabilities averaged with weights, each fed the input it was trained on."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Rounds of greedy ensemble selection per member (Caruana et al., 2004): enough for weights in steps of a few %.
SELECTION_ROUNDS_PER_MEMBER = 10


class MemberInput(nn.Module):
    """The ensemble's normalised input turned into one member's: its own mean and std, its own side length."""

    def __init__(self, ensemble_config: dict, member_config: dict) -> None:
        super().__init__()
        source_mean, source_std = _stats(ensemble_config)
        mean, std = _stats(member_config)
        self.renormalise = not (torch.equal(source_mean, mean) and torch.equal(source_std, std))
        self.register_buffer("scale", source_std / std, persistent=False)
        self.register_buffer("shift", (source_mean - mean) / std, persistent=False)
        size = tuple(member_config["input_size"][-2:])
        self.size = None if size == tuple(ensemble_config["input_size"][-2:]) else size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            images = images * self.scale + self.shift
        if self.size is not None:
            images = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False)
        return images


def _stats(data_config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(data_config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data_config["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


class Ensemble(nn.Module):
    """Images → the weighted mean of the members' class probabilities (weights sum to 1).

    A CAM of an ensemble explains its score through its first member's feature maps (`backbone`)."""

    probe = None
    segments = None

    def __init__(self, members: list[nn.Module], inputs: list[MemberInput], weights: list[float]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(inputs)
        self.weights = [float(w) for w in weights]

    @property
    def backbone(self) -> nn.Module:
        return self.members[0].backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = None
        for member, adapt, weight in zip(self.members, self.inputs, self.weights, strict=True):
            if weight == 0:
                continue
            probs = member(adapt(images)).float() * weight
            out = probs if out is None else out + probs
        return out


def ensemble_data_config(configs: list[dict]) -> dict:
    """The ensemble's own preprocessing: that of the member with the largest input (the others are resized down)."""
    return dict(max(configs, key=lambda c: c["input_size"][-1] * c["input_size"][-2]))


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)).mean())


def select_weights(member_probs: list[np.ndarray], targets: np.ndarray) -> list[float]:
    """Greedy ensemble selection with replacement (Caruana et al., 2004) on validation predictions: each round adds
    the member that lowers the averaged prediction's log loss most; a member's weight is its share of the rounds.

    Written here because it is twenty lines of numpy over predictions already in memory; the libraries that have
    it (AutoGluon, auto-sklearn) bring a whole AutoML stack."""
    rounds = SELECTION_ROUNDS_PER_MEMBER * len(member_probs)
    counts = np.zeros(len(member_probs), dtype=np.int64)
    total = np.zeros_like(member_probs[0], dtype=np.float64)
    for step in range(1, rounds + 1):
        losses = [negative_log_likelihood((total + p) / step, targets) for p in member_probs]
        best = int(np.argmin(losses))  # ties go to the earlier member
        counts[best] += 1
        total += member_probs[best]
    return (counts / counts.sum()).tolist()
