"""The regularizers' penalties (see `training.regularizers`). Written here because no well-kept library on PyPI
has them: thuml's Transfer-Learning-Library, which does, installs from git only and pins an old torch; each is a
few lines."""

from __future__ import annotations

import torch
from torch import nn

from graftcv.backbones import classifier_param_names


class StartingPointPenalty(nn.Module):
    """L2-SP: weight/2 · Σ‖w − w⁰‖² over the parameters the network had before fine-tuning (w⁰, taken when this
    is built), the classifier excepted. Frozen parameters add nothing and are skipped."""

    def __init__(self, model: nn.Module, weight: float) -> None:
        super().__init__()
        self.weight = weight
        head = classifier_param_names(model)
        self._starts: dict[str, str] = {}  # parameter name → buffer name (buffer names cannot hold dots)
        for index, (name, parameter) in enumerate(model.named_parameters()):
            if name not in head:
                self._starts[name] = f"start{index}"
                self.register_buffer(f"start{index}", parameter.detach().clone(), persistent=False)

    def forward(self, model: nn.Module, pooled: torch.Tensor | None = None) -> torch.Tensor:
        total = None
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and name in self._starts:
                term = (parameter - getattr(self, self._starts[name])).pow(2).sum()
                total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=next(model.parameters()).device)
        return 0.5 * self.weight * total


class SpectralShrinkage(nn.Module):
    """BSS: weight · Σ of the k smallest squared singular values of the (batch × features) matrix, which damps
    the feature directions that carry little and that fine-tuning on few images would otherwise amplify."""

    def __init__(self, model: nn.Module, weight: float, k: int = 1) -> None:
        super().__init__()
        self.weight, self.k = weight, k

    def forward(self, model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        singular = torch.linalg.svdvals(pooled.float())  # descending
        return self.weight * singular[-self.k :].pow(2).sum()
