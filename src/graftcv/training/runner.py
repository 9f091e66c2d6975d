"""Run one strategy phase with a Lightning Trainer: early stopping, time limit, best weights restored."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from graftcv import distributed
from graftcv.errors import GraftcvError
from graftcv.training.budget import RunClock
from graftcv.training.callbacks import (
    BestWeights,
    EpochListeners,
    EpochLog,
    EpochStates,
    PatientWhileWarming,
    RunProgressBar,
    listeners,
)
from graftcv.training.checkpoint import SafetensorsCheckpointIO
from graftcv.training.module import TransferModule
from graftcv.training.phase import Phase


@dataclass
class PhaseResult:
    """What one phase did: epochs, the best epoch, its validation outputs, and the per-epoch rows."""

    name: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    val_probs: np.ndarray | None
    val_targets: np.ndarray | None
    seconds: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banners, tips and advice that do not apply here (frozen modules are in eval mode on
    purpose; small data sets have few batches) would bury the few lines that matter."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (
            ".*does not have many workers.*",
            ".*number of training batches.*",
            ".*module\\(s\\) in eval mode.*",
            ".*LeafSpec.*",
            ".*litlogger.*",
            ".*Trainer.fit. stopped.*",
            ".*no `val_dataloader`.*",
            ".*smaller than the logging interval.*",
            ".*Checkpoint directory .* exists and is not empty.*",  # it also holds progress.safetensors
            ".*sync_dist=True.*",  # validation metrics are computed on the gathered set (TransferModule)
            ".*GLOBAL_RANK.*",
            ".*`IterableDataset` has `__len__` defined.*",  # ShardImageStream deals exact shares to workers
        ):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            logger.setLevel(level)


def make_trainer(
    max_epochs: int,
    callbacks: list[L.Callback],
    devices: str | int = "auto",
    accelerator: str = "auto",
    precision: str = "32-true",
    max_time: timedelta | None = None,
    progress: bool = True,
    checkpoint: Path | None = None,
    accumulate: int = 1,
    fraction: float = 1.0,
    clock: RunClock | None = None,
) -> L.Trainer:
    """A quiet Trainer; with `checkpoint`, the state after every epoch goes to that file (pickle-free)."""
    bar = progress and sys.stderr.isatty()
    if checkpoint is not None:
        callbacks = [
            *callbacks,
            ModelCheckpoint(
                dirpath=checkpoint.parent,
                filename=checkpoint.stem,
                save_top_k=1,
                monitor=None,
                save_on_train_epoch_end=True,  # after EpochLog has recorded the epoch
                enable_version_counter=False,
            ),
        ]
    if listeners():
        callbacks = [*callbacks, EpochListeners(listeners())]
    world = distributed.current()
    placement: dict = {"devices": 1 if devices == "auto" else devices}  # "auto" would start one process per GPU
    if world is not None and world.size > 1:
        from lightning.pytorch.strategies import DDPStrategy

        # the ranks already run (graftcv.distributed launched them): this Trainer joins their process group.
        # Lightning's sampler replacement is off: gradient.make_loaders gives each rank its share.
        placement = {
            "devices": world.devices,
            "num_nodes": world.num_nodes,
            "strategy": DDPStrategy(),
            "use_distributed_sampler": False,
        }
        bar = bar and distributed.is_main()
    try:
        return L.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            **placement,
            precision=precision,
            max_time=max_time,
            accumulate_grad_batches=accumulate,
            limit_train_batches=fraction,
            logger=False,
            enable_checkpointing=checkpoint is not None,
            plugins=[SafetensorsCheckpointIO()] if checkpoint is not None else None,
            enable_model_summary=False,
            enable_progress_bar=bar,
            callbacks=[*callbacks, *([RunProgressBar(clock)] if bar else [])],
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
    except (MisconfigurationException, ValueError) as error:  # bad --devices/--accelerator/--precision
        raise GraftcvError(f"Cannot set up training: {str(error).splitlines()[0]}") from None


def run_phase(
    module: TransferModule,
    phase: Phase,
    train_loader: DataLoader,
    val_loader: DataLoader,
    patience: int | None = 3,
    max_time: timedelta | None = None,
    devices: str | int = "auto",
    accelerator: str = "auto",
    precision: str = "32-true",
    epoch_offset: int = 0,
    started: float | None = None,
    progress: bool = True,
    best: BestWeights | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    accumulate: int = 1,
    fraction: float = 1.0,
    clock: RunClock | None = None,
    states: EpochStates | None = None,
) -> PhaseResult:
    """Train `module` under `phase`; the weights of the best validation epoch so far (this phase or,
    when `best` is carried over, an earlier one) are in the model when it returns.

    With `checkpoint`, every epoch's state is saved there; `resume` continues from it when it exists. `patience`
    None: no early stopping (a snapshot cycle runs to its end). `states` keeps snapshot members and soup ingredients.
    """
    module.start_phase(phase)
    best = best or BestWeights()
    best.epoch_offset = epoch_offset
    echo = not sys.stderr.isatty() and distributed.is_main()
    log = EpochLog(phase.name, epoch_offset, started or time.perf_counter(), echo, clock)
    callbacks: list[L.Callback] = [best, log]
    if patience is not None:
        callbacks.append(PatientWhileWarming("val_loss", patience=patience, mode="min"))
    if states is not None:
        states.epoch_offset = epoch_offset
        callbacks.append(states)
    phase_start = time.perf_counter()
    with quiet_lightning():
        trainer = make_trainer(
            phase.epochs,
            callbacks,
            devices,
            accelerator,
            precision,
            max_time,
            progress,
            checkpoint,
            accumulate,
            fraction,
            clock,
        )
        ckpt_path = checkpoint if resume and checkpoint is not None and checkpoint.is_file() else None
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
        except SystemExit:  # Lightning turns Ctrl-C into exit(1): give the interrupt back to the caller
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
    return PhaseResult(
        name=phase.name,
        epochs_run=len(log.rows),
        best_epoch=best.best_epoch,
        best_val_loss=best.best_loss,
        val_probs=best.val_probs.numpy() if best.val_probs is not None else None,
        val_targets=best.val_targets.numpy() if best.val_targets is not None else None,
        seconds=time.perf_counter() - phase_start,
        stopped_early=len(log.rows) < phase.epochs,
        history=log.rows,
    )
