"""The loss of a model with several labels per image: per task, cross-entropy over its slice (single) or a binary
loss per label (multi: BCE or timm's asymmetric loss), weighted equally, by fixed weights or by learned uncertainty."""

from __future__ import annotations

import torch
from torch import nn

from graftcv.data.tasks import MULTI, Layout
from graftcv.errors import GraftcvError
from graftcv.heads.ops import activate_segments

WEIGHTINGS = ("equal", "uncertainty")
MULTILABEL_LOSSES = ("bce", "asl")


def parse_task_weights(text: str, n_tasks: int) -> str | list[float]:
    """'equal', 'uncertainty' or W1,W2,... (one non-negative weight per task, in the CSV's column order)."""
    if text in WEIGHTINGS:
        return text
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise GraftcvError(f"--task-weights must be equal, uncertainty or W1,W2,..., not {text!r}.") from None
    if len(weights) != n_tasks or min(weights) < 0 or not sum(weights):
        raise GraftcvError(f"--task-weights needs {n_tasks} non-negative weights (one per task), not {text!r}.")
    return weights


class OutputsLoss(nn.Module):
    """Loss, validation loss and probabilities of a `Layout`'s outputs from the network's logits."""

    def __init__(
        self,
        layout: Layout,
        weighting: str | list[float] = "equal",
        label_smoothing: float = 0.0,
        multilabel_loss: str = "bce",
        pos_weight: torch.Tensor | None = None,
    ) -> None:
        """`pos_weight`: per output, the weight of a positive (--balance weights: negatives over positives)."""
        super().__init__()
        self.parts = [(s.start, s.stop, t.kind == MULTI) for t, s in zip(layout.tasks, layout.slices, strict=True)]
        self.segments = {"segments": layout.segments()}
        self.weighting = weighting
        # Kendall, Gal & Cipolla (2018): a learned log-variance s per task, loss exp(-s)·L + s; trained with the head
        self.log_vars = nn.Parameter(torch.zeros(len(self.parts))) if weighting == "uncertainty" else None
        self.register_buffer(
            "fixed", torch.tensor(weighting if isinstance(weighting, list) else [1.0] * len(self.parts))
        )
        self.single = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.register_buffer("pos_weight", pos_weight)
        self.multilabel_loss = multilabel_loss
        if multilabel_loss == "asl":
            from timm.loss import AsymmetricLossMultiLabel

            # timm's defaults (γ- 4, γ+ 1, clip 0.05), averaged over images and labels like BCE
            self.asl = AsymmetricLossMultiLabel(reduction="mean")

    def task_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        losses, logits, targets = [], logits.float(), targets.float()
        for start, stop, multi in self.parts:
            x, y = logits[:, start:stop], targets[:, start:stop]
            if not multi:
                losses.append(self.single(x, y.argmax(1)))
            elif self.multilabel_loss == "asl":
                losses.append(self.asl(x, y))
            else:
                weight = self.pos_weight[start:stop] if self.pos_weight is not None else None
                losses.append(nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=weight))
        return losses

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses = torch.stack(self.task_losses(logits, targets))
        if self.log_vars is not None:
            return torch.sum(torch.exp(-self.log_vars) * losses + self.log_vars)
        return torch.sum(self.fixed * losses) / self.fixed.sum() * len(self.parts)

    def val_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Plain BCE / cross-entropy summed over tasks (what picks the best epoch: comparable across epochs)."""
        total = 0.0
        for start, stop, multi in self.parts:
            x, y = logits[:, start:stop].float(), targets[:, start:stop].float()
            if multi:
                total = total + nn.functional.binary_cross_entropy_with_logits(x, y)
            else:
                total = total + nn.functional.cross_entropy(x, y.argmax(1))
        return total

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return activate_segments(self.segments, logits)

    def task_weights(self) -> list[float]:
        if self.log_vars is not None:
            return [round(float(v), 4) for v in torch.exp(-self.log_vars.detach())]
        return [float(v) for v in self.fixed]


def positive_weights(targets, clip: float = 10.0) -> torch.Tensor:
    """Per output, negatives over positives (clipped to `clip`): rare labels weigh more under --balance weights."""
    targets = torch.as_tensor(targets, dtype=torch.float32)
    positives = targets.sum(0).clamp_min(1.0)
    return ((len(targets) - positives) / positives).clamp(1.0, clip)
