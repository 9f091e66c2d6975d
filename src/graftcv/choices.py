"""Which names each registry-backed setting accepts: CLI help and config validation read them from here."""

from __future__ import annotations

from graftcv.config import TrainConfig
from graftcv.errors import GraftcvError
from graftcv.heads.sklearn import HEADS
from graftcv.registry import Registry
from graftcv.strategies import STRATEGIES
from graftcv.training.alignment import ALIGNMENTS, SOURCE_ONLY
from graftcv.training.optim import OPTIMIZERS, SCHEDULES
from graftcv.training.regularizers import parse_regularizers

REGISTRIES: dict[str, Registry] = {
    "strategy": STRATEGIES,
    "head": HEADS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


def check_choices(config: TrainConfig) -> TrainConfig:
    """Every registry-backed setting names a registered item, or one sentence says which ones exist."""
    for name, registry in REGISTRIES.items():
        value = getattr(config, name)
        if value not in registry:
            flag = f"--{name.replace('_', '-')}"
            raise GraftcvError(f"Unknown {registry.kind} {value!r}: {flag} takes one of {', '.join(registry)}.")
    if config.adaptation != SOURCE_ONLY and config.adaptation not in ALIGNMENTS:
        raise GraftcvError(f"Unknown adaptation method {config.adaptation!r}: choose one of "
                           f"{', '.join([SOURCE_ONLY, *ALIGNMENTS])}.")  # fmt: skip
    regularizers = parse_regularizers(config.reg)
    strategy = STRATEGIES[config.strategy]
    if regularizers and strategy.closed_form:
        raise GraftcvError(f"--reg regularizes gradient fine-tuning; {strategy.name} fits its head in closed form on "
                           "frozen features: drop --reg, or choose a gradient strategy such as finetune.")  # fmt: skip
    if "l2sp" in regularizers and not (config.pretrained or config.weights):
        raise GraftcvError("--reg l2sp pulls the weights towards pretrained ones, and this run starts from random "
                           "weights: drop l2sp, or train from pretrained weights.")  # fmt: skip
    return config
