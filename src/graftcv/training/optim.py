"""Optimizers and learning-rate schedules by name: one `register_optimizer` / `register_schedule` call each.

torch is imported inside the builders, so that listing the names (CLI help, validation) stays light."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graftcv.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimSettings:
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    weight_decay: float = 0.01
    momentum: float = 0.9
    warmup_epochs: float = 1.0


@dataclass(frozen=True)
class Optimizer:
    """`build(param_groups, settings)`: the groups carry their own lr and weight decay."""

    name: str
    help: str
    build: Callable[[list[dict], OptimSettings], torch.optim.Optimizer]


@dataclass(frozen=True)
class ScheduleContext:
    """What a schedule may need to know about the run it shapes."""

    max_lrs: list[float]
    total_steps: int
    steps_per_epoch: int
    max_epochs: int
    settings: OptimSettings


@dataclass(frozen=True)
class Schedule:
    """`build(optimizer, context)`: a torch scheduler, or None for a constant rate; stepped every `interval`."""

    name: str
    help: str
    build: Callable[[torch.optim.Optimizer, ScheduleContext], object | None]
    interval: str = "step"


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")
SCHEDULES: Registry[Schedule] = Registry("schedule")
register_optimizer = OPTIMIZERS.register
register_schedule = SCHEDULES.register


def _adamw(groups: list[dict], s: OptimSettings) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(groups)


def _sgd(groups: list[dict], s: OptimSettings) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(groups, momentum=s.momentum, nesterov=True)


def _rmsprop(groups: list[dict], s: OptimSettings) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(groups, momentum=s.momentum, alpha=0.9, eps=1e-3)


register_optimizer(Optimizer("adamw", "AdamW (decoupled weight decay)", _adamw))
register_optimizer(Optimizer("sgd", "SGD with Nesterov momentum", _sgd))
register_optimizer(Optimizer("rmsprop", "RMSprop as in the EfficientNet recipes", _rmsprop))


def _onecycle(optimizer: torch.optim.Optimizer, c: ScheduleContext):
    import torch

    if c.total_steps < 3:  # too short to ramp up and down
        return None
    # warm up for a quarter of the steps, but at least a step and a half: OneCycleLR divides by the length
    # of each part, which must not round to zero on tiny runs
    warmup = min(0.5, max(0.25, 1.5 / c.total_steps))
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=c.max_lrs, total_steps=c.total_steps, pct_start=warmup, cycle_momentum=False
    )


def _cosine(optimizer: torch.optim.Optimizer, c: ScheduleContext):
    import torch

    warmup = min(c.total_steps - 1, int(c.settings.warmup_epochs * c.steps_per_epoch))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, c.total_steps - warmup))
    if warmup < 1:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def _cyclical(optimizer: torch.optim.Optimizer, c: ScheduleContext):
    import torch

    return torch.optim.lr_scheduler.CyclicLR(
        optimizer,
        base_lr=[lr / 10 for lr in c.max_lrs],
        max_lr=c.max_lrs,
        step_size_up=2 * c.steps_per_epoch,
        mode="triangular2",
        cycle_momentum=False,
    )


def _step(optimizer: torch.optim.Optimizer, c: ScheduleContext):
    import torch

    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, (c.max_epochs or 3) // 3))


register_schedule(Schedule("onecycle", "warm up for a quarter of the steps, then anneal (fastai)", _onecycle))
register_schedule(Schedule("cosine", "linear warm-up for an epoch, then cosine decay", _cosine))
register_schedule(Schedule("step", "divide by 10 every third of the epochs", _step, interval="epoch"))
register_schedule(Schedule("cyclical", "triangular cycles of 4 epochs, halving", _cyclical))
register_schedule(Schedule("constant", "the same rate throughout", lambda optimizer, c: None))
