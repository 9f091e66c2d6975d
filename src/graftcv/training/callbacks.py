"""Callbacks: keep the best weights in memory, and record one row of metrics per epoch."""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from rich.console import Console

from graftcv.training.budget import RunClock, format_seconds

# logged by TransferModule when adapting (the first three) or regularizing (--reg)
LOSS_PARTS = ("align_loss", "domain_acc", "discrepancy", "reg_loss")


class BestWeights(L.Callback):
    """Keeps a copy of the weights (and validation outputs) of the epoch with the lowest validation loss,
    and restores them when training ends. One instance spans all phases of a run, so a later phase that
    never beats an earlier one leaves the earlier weights in place. In memory: no pickled checkpoint."""

    def __init__(self) -> None:
        self.best_loss = float("inf")
        self.best_epoch = 0  # 1-based over the whole run; 0 = none yet
        self.epoch_offset = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.val_probs: torch.Tensor | None = None
        self.val_targets: torch.Tensor | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # after the module's on_validation_epoch_end, which computes the loss of the whole (gathered) set
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        if loss is None or float(loss) >= self.best_loss:
            return
        self.best_loss, self.best_epoch = float(loss), self.epoch_offset + trainer.current_epoch + 1
        self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        self.val_probs = torch.cat(module.val_probs)
        self.val_targets = torch.cat(module.val_targets)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            module.model.load_state_dict(self.state)

    def state_dict(self) -> dict:
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "state": self.state,
            "val_probs": self.val_probs,
            "val_targets": self.val_targets,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_epoch = state["best_loss"], state["best_epoch"]
        self.state, self.val_probs, self.val_targets = state["state"], state["val_probs"], state["val_targets"]


class EpochStates(L.Callback):
    """The weights and validation outputs of each cycle's last epoch (snapshot ensemble members) and of the `keep`
    epochs with the lowest validation loss (soup ingredients), in memory; one instance spans every cycle."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.epoch_offset = 0
        self.latest: dict | None = None
        self.cycle_ends: list[dict] = []
        self.best: list[dict] = []

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or loss is None:
            return
        self.latest = {
            "epoch": self.epoch_offset + trainer.current_epoch + 1,
            "val_loss": float(loss),
            "state": {k: v.detach().clone() for k, v in module.model.state_dict().items()},
            "val_probs": torch.cat(module.val_probs),
        }
        self.best = sorted([*self.best, self.latest], key=lambda e: e["val_loss"])[: self.keep]

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.latest is not None:  # before BestWeights restores the best epoch: this is where the cycle ended
            self.cycle_ends.append(self.latest)
            self.latest = None

    def state_dict(self) -> dict:
        return {"cycle_ends": self.cycle_ends, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.cycle_ends, self.best = list(state["cycle_ends"]), list(state["best"])


class EpochLog(L.Callback):
    """One dict per epoch: phase, epoch, losses, accuracy, the head's learning rate as the epoch began,
    seconds since start."""

    def __init__(
        self, phase: str, epoch_offset: int, started: float, echo: bool, clock: RunClock | None = None
    ) -> None:
        self.phase, self.offset, self.started, self.echo, self.clock = phase, epoch_offset, started, echo, clock
        self.epoch_started = started
        self.rows: list[dict] = []
        self.console = Console(file=sys.stderr)
        self.epoch_lr = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # read before the epoch: Lightning steps epoch-interval schedulers before on_train_epoch_end
        lrs = [g["lr"] for g in trainer.optimizers[0].param_groups] if trainer.optimizers else [0.0]
        self.epoch_lr = max(lrs)
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {
            "phase": self.phase,
            "epoch": self.offset + trainer.current_epoch + 1,
            "train_loss": metrics.get("train_loss"),
            "val_loss": metrics.get("val_loss"),
            "val_acc": metrics.get("val_acc"),
            "lr": self.epoch_lr,
            "trainable_groups": module.n_trainable(trainer.current_epoch),
            "train_px": module.phase.size_at(trainer.current_epoch) or "",
            "seconds": round(time.perf_counter() - self.started, 2),
        }
        row |= {k: metrics[k] for k in LOSS_PARTS if k in metrics}
        self.rows.append(row)
        eta = ""
        if self.clock is not None:
            self.clock.epoch = time.perf_counter() - self.epoch_started
            self.clock.epochs_left = max(0, self.clock.epochs_left - 1)
            eta = f"  run ETA {format_seconds(self.clock.eta())}"
        if self.echo:
            self.console.print(
                f"[dim]{row['phase']:>11}[/] epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}  "
                f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  "
                f"{row['seconds']:.1f}s{eta}",
                soft_wrap=True,
            )

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


class RunProgressBar(RichProgressBar):
    """Lightning's rich bar (which times the epoch), with the ETA of the whole run beside the metrics."""

    def __init__(self, clock: RunClock | None) -> None:
        super().__init__(leave=True)
        self.clock = clock

    def get_metrics(self, trainer: L.Trainer, module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, module)
        if self.clock is not None and trainer.training and trainer.num_training_batches:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.ready / trainer.num_training_batches
            items["run ETA"] = format_seconds(self.clock.eta(min(done, 1.0)))
        return items


# Who hears each epoch's metrics beyond the run itself (graftcv tune's pruner): set with `listening`, read by every
# Trainer the run builds. A context variable rather than an argument threaded through fit, train and each phase.
_LISTENERS: contextvars.ContextVar[tuple] = contextvars.ContextVar("graftcv_epoch_listeners", default=())


@contextlib.contextmanager
def listening(listener) -> Iterator[None]:
    """Call `listener(metrics)` after every training epoch (of every phase) of the runs inside the block; an
    exception it raises (a pruned trial) ends the run."""
    token = _LISTENERS.set((*_LISTENERS.get(), listener))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def listeners() -> tuple:
    return _LISTENERS.get()


class EpochListeners(L.Callback):
    """Each epoch's validation metrics handed to the listeners of `listening`."""

    def __init__(self, found: tuple) -> None:
        self.found = found

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        for listener in self.found:
            listener(metrics)


class PatientWhileWarming(EarlyStopping):
    """Early stopping on validation loss that counts only the epochs in which the learning rate has settled: not
    while it rises, nor while a decaying schedule still holds it above half its peak.

    In a one-cycle (or warm-up) schedule the validation loss often gets worse until the rate peaks and stays noisy
    while the rate is high; counting those epochs stops a long phase before it anneals and keeps an under-trained
    network (budgeted fine-tunes on art_painting stopped 4 epochs in, and 3 epochs after the peak with the best
    weights still the head phase's: bench/RESULTS.md, issue 21). Until counting starts the baseline follows the
    loss; a flat rate (constant, step) counts from the start."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_lr: float | None = None
        self._peak_lr = 0.0

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        rates = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        lr = max(rates) if rates else None
        settling = False
        if lr is not None:
            self._peak_lr = max(self._peak_lr, lr)
            moving = self._last_lr is not None and abs(lr - self._last_lr) > 1e-9 * self._last_lr
            settling = moving and lr > 0.5 * self._peak_lr  # rising (lr is the peak), or decaying from high
            self._last_lr = lr
        current = trainer.callback_metrics.get(self.monitor)
        if settling and current is not None:
            self.best_score = current.squeeze().detach().to(self.best_score.device).clone()
            self.wait_count = 0
            return
        super()._run_early_stopping_check(trainer)
