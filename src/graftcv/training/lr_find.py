"""Learning-rate range test on Lightning's tuner, for `graftcv lr-find` and `--lr auto`."""

from __future__ import annotations

from dataclasses import dataclass

from lightning.pytorch.tuner import Tuner
from torch.utils.data import DataLoader

from graftcv.training.module import TransferModule
from graftcv.training.phase import Phase
from graftcv.training.runner import make_trainer, quiet_lightning


@dataclass
class LrFinding:
    suggestion: float
    lrs: list[float]
    losses: list[float]


def find_lr(
    module: TransferModule,
    phase: Phase,
    train_loader: DataLoader,
    num_steps: int = 60,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    **trainer_options,
) -> LrFinding:
    """Exponentially growing LR over `num_steps` batches; the suggestion is the steepest loss descent.
    The module's weights are restored afterwards (Lightning does that)."""
    module.start_phase(phase)
    with quiet_lightning():
        trainer = make_trainer(max_epochs=num_steps, callbacks=[], progress=False, **trainer_options)
        result = Tuner(trainer).lr_find(
            module,
            train_dataloaders=train_loader,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=num_steps,
            update_attr=False,
            early_stop_threshold=4.0,
        )
    suggestion = result.suggestion() or phase.lr
    return LrFinding(
        float(suggestion), [float(x) for x in result.results["lr"]], [float(x) for x in result.results["loss"]]
    )
