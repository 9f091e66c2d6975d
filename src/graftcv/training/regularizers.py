"""Fine-tuning regularizers that keep a network near what it learned on ImageNet, one registration each:
`l2sp` (a penalty towards the pretrained weights instead of towards zero) and `bss` (batch spectral shrinkage).

`--reg l2sp`, `--reg bss`, `--reg l2sp,bss`; `NAME:WEIGHT` replaces a published default weight. torch is imported
by the penalties themselves (`training.penalties`), so that listing and checking the names stays light."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graftcv.errors import GraftcvError
from graftcv.registry import Registry, lazy


@dataclass(frozen=True)
class Regularizer:
    """`build(model, weight)`: a module called as penalty(model, pooled_features) → a scalar added to the loss.
    `replaces_decay`: the pretrained weights get no weight decay towards zero while it is on."""

    name: str
    help: str
    weight: float
    build: Callable
    replaces_decay: bool = False
    needs_features: bool = False


REGULARIZERS: Registry[Regularizer] = Registry("regularizer")


def register_regularizer(regularizer: Regularizer) -> Regularizer:
    return REGULARIZERS.register(regularizer)


def parse_regularizers(spec: str) -> dict[str, float]:
    """'l2sp:0.1,bss' → {'l2sp': 0.1, 'bss': 0.001}; 'none' or '' → {}; one sentence for anything else."""
    chosen: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "none"):
            continue
        name, _, weight = part.partition(":")
        if name not in REGULARIZERS:
            raise GraftcvError(f"Unknown regularizer {name!r}: --reg takes none or any of {', '.join(REGULARIZERS)}, "
                               "comma-separated, each optionally NAME:WEIGHT.")  # fmt: skip
        try:
            value = float(weight) if weight else REGULARIZERS[name].weight
        except ValueError:
            raise GraftcvError(f"--reg {part}: the weight after ':' must be a number.") from None
        if value < 0:
            raise GraftcvError(f"--reg {part}: the weight must not be negative.")
        chosen[name] = value
    return chosen


# Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with convolutional networks" (ICML 2018):
# alpha/2 * ||w - w0||^2 on the pretrained weights; the new classifier keeps ordinary weight decay (their beta term).
# alpha = 0.01 is inside the range they searched (0.001-1) and the common fine-tuning default.
register_regularizer(
    Regularizer("l2sp", "Penalty towards the pretrained weights (L2-SP)", 0.01,
                lazy("graftcv.training.penalties:StartingPointPenalty"), replaces_decay=True)
)  # fmt: skip
# Chen et al., "Catastrophic forgetting meets negative transfer: batch spectral shrinkage" (NeurIPS 2019): eta times
# the k smallest squared singular values of the batch's pooled features, with their eta = 0.001 and k = 1.
register_regularizer(
    Regularizer(
        "bss",
        "Batch spectral shrinkage of the pooled features (BSS; on CPU micro-batches of 16 it emptied the features "
        "of `full` runs on flowers5, −11 points: bench/RESULTS.md)",
        0.001,
        lazy("graftcv.training.penalties:SpectralShrinkage"),
        needs_features=True,
    )
)
