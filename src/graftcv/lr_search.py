"""`find_lr`: Lightning's learning-rate range test for a strategy's main phase on this data."""

from __future__ import annotations

from graftcv.config import TrainConfig
from graftcv.errors import GraftcvError
from graftcv.fitting import feature_pass, prepare, targets
from graftcv.planning import DataInput
from graftcv.strategies import STRATEGIES


def find_lr(data: DataInput, steps: int = 60, **settings):
    """Learning-rate range test for the main phase of a strategy on this data (Lightning's LR finder)."""
    from graftcv.training.gradient import build_module, make_loaders
    from graftcv.training.lr_find import find_lr as range_test

    strategy = STRATEGIES.lookup(settings.get("strategy", TrainConfig.strategy))
    if strategy.closed_form:  # said before the backbone is built
        raise GraftcvError(f"{strategy.name} has no learning rate: its head is fitted in closed form.")
    prep = prepare(data, settings)
    config = prep.config
    phase = prep.phases[-1]
    features = feature_pass(prep) if phase.on_features else None
    cached = (features.train, features.val) if features is not None else None
    module = build_module(
        prep.backbone.model, prep.config, targets(prep, "train"), len(prep.splits.classes), prep.splits.tasks
    )
    train_loader, _ = make_loaders(phase, prep.splits, prep.config, prep.backbone.data_config, cached)
    return range_test(
        module,
        phase,
        train_loader,
        num_steps=steps,
        devices=config.devices,
        accelerator=config.accelerator,
        precision=config.precision,
    )
