"""Run a strategy's phases: loaders (images or cached features), LR finding, the Lightning loop per phase."""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset, WeightedRandomSampler

from graftcv import distributed
from graftcv.backbones import early_groups, layer_groups
from graftcv.config import TrainConfig, parse_duration
from graftcv.data import DataSplits, ImageDataset, build_transform, make_loader
from graftcv.data.loaders import default_workers
from graftcv.data.tasks import Layout
from graftcv.errors import GraftcvError
from graftcv.training.alignment import ALIGNMENTS, SOURCE_ONLY
from graftcv.training.budget import (
    MAX_EPOCH_FACTOR,
    MIN_EPOCH_FRACTION,
    EpochPlan,
    RunClock,
    Throughput,
    epoch_seconds,
    format_seconds,
    plan_epochs,
)
from graftcv.training.callbacks import BestWeights, EpochStates
from graftcv.training.checkpoint import load_state, save_state
from graftcv.training.module import TransferModule
from graftcv.training.objectives import OutputsLoss, parse_task_weights, positive_weights
from graftcv.training.optim import OptimSettings
from graftcv.training.phase import Phase, first_cycle
from graftcv.training.regularizers import REGULARIZERS, parse_regularizers
from graftcv.training.resizing import planned_sizes
from graftcv.training.runner import run_phase
from graftcv.training.target_stream import with_target

log = logging.getLogger("graftcv")
PROGRESS = "progress.safetensors"  # the phases finished so far, their history and the weights after them
SOUP_INGREDIENTS = 5  # --snapshots: the epochs of lowest validation loss kept for the greedy soup


@dataclass
class GradientOutcome:
    history: list[dict]
    val_probs: np.ndarray
    epochs: int
    best_epoch: int
    lr_found: float | None
    snapshots: EpochStates | None = None  # --snapshots: each cycle's end and the best epochs, with their weights


@dataclass(frozen=True)
class Timing:
    """What the time planning of a run knows: measured rates, the moment training must end by (--budget) and
    the clock behind the whole run's ETA."""

    rates: Throughput
    deadline: float | None
    clock: RunClock
    estimated_seconds: float = 0.0  # the whole run as estimated before it started; the budget when given


def _class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    return torch.tensor(len(targets) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def _sampler(targets: np.ndarray, n_classes: int, seed: int) -> WeightedRandomSampler:
    per_class = 1.0 / np.maximum(np.bincount(targets, minlength=n_classes), 1)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(per_class[targets].tolist(), len(targets), replacement=True, generator=generator)


def _mixup(config: TrainConfig, n_classes: int) -> nn.Module | None:
    if not (config.mixup or config.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        label_smoothing=config.label_smoothing,
        num_classes=n_classes,
    )


def build_module(
    model: nn.Module, config: TrainConfig, y_train: np.ndarray, n_classes: int, tasks: Layout | None = None
) -> TransferModule:
    """The Lightning module of a run; `tasks`: several labels per image (y_train then holds 0/1 rows)."""
    optim = OptimSettings(config.optimizer, config.schedule, config.weight_decay, config.momentum)
    objective = None
    if tasks is not None:
        pos_weight = positive_weights(y_train) if config.balance == "weights" else None
        weighting = parse_task_weights(config.task_weights, len(tasks.tasks))
        objective = OutputsLoss(tasks, weighting, config.label_smoothing, config.multilabel_loss, pos_weight)
    weights = _class_weights(y_train, n_classes) if config.balance == "weights" and tasks is None else None
    groups = layer_groups(model)
    pretrained = config.pretrained or config.weights is not None
    frozen = early_groups(model, groups) if config.freeze_stem and pretrained else 0
    alignment = None
    if config.target is not None and config.adaptation != SOURCE_ONLY:
        alignment = ALIGNMENTS.lookup(config.adaptation).build(model.num_features)
    weights_by_name = parse_regularizers(config.reg)
    regularizers = [REGULARIZERS[name] for name in weights_by_name]  # built now: L2-SP keeps these weights
    penalties = {r.name: r.build(model, weights_by_name[r.name]) for r in regularizers}
    return TransferModule(
        model, groups, optim, config.label_smoothing, weights, config.bn, _mixup(config, n_classes), frozen,
        alignment, config.adaptation_weight, penalties,
        decay_pretrained=not any(r.replaces_decay for r in regularizers),
        penalty_features=any(r.needs_features for r in regularizers), objective=objective,
    )  # fmt: skip


def micro_batching(config: TrainConfig, phase: Phase) -> tuple[int, int]:
    """(images per pass, passes per optimizer step) for a phase: the batch split into micro-batches that
    divide it, on images only (feature phases are cheap)."""
    if phase.on_features:
        return config.batch_size, 1
    wanted = config.micro_batch
    if wanted is None:
        same_gradients = config.bn == "freeze" and not torch.cuda.is_available()
        wanted = 16 if same_gradients else config.batch_size
    micro = next(m for m in range(min(wanted, config.batch_size), 0, -1) if config.batch_size % m == 0)
    return micro, config.batch_size // micro


def make_loaders(
    phase: Phase,
    splits: DataSplits,
    config: TrainConfig,
    data_config: dict,
    cached: tuple[np.ndarray, np.ndarray] | None,
):
    """Train and validation loaders for a phase: cached features, or images through the transforms."""
    y_train = np.array(splits.train.targets(splits.classes))
    y_val = np.array(splits.val.targets(splits.classes))
    sampler = _sampler(y_train, len(splits.classes), config.seed) if config.balance == "sampler" else None
    sampler, val_share = _rank_samplers(len(y_train), len(y_val), sampler, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if phase.on_features:
        train_x, val_x = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in cached)
        train = torch.utils.data.DataLoader(
            TensorDataset(train_x, torch.from_numpy(y_train)),
            batch_size=config.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
        )
        return train, torch.utils.data.DataLoader(TensorDataset(val_x, torch.from_numpy(y_val)), 256, sampler=val_share)
    size = data_config["input_size"][-1]
    train_config = data_config | {"input_size": (3, *(config.training_size(size),) * 2)}
    train_transform = build_transform(train_config, config.augment, True)
    if splits.train.stream is not None:
        return _stream_loaders(phase, splits, config, data_config, train_transform, size)
    train_set = ImageDataset(splits.train.paths, y_train, train_transform, size)
    val_set = ImageDataset(splits.val.paths, y_val, build_transform(data_config), size)
    micro, _ = micro_batching(config, phase)
    lonely = len(train_set) > micro and len(train_set) % micro == 1  # a batch of one cannot train BatchNorm
    drop_last = (bool(config.mixup or config.cutmix) and len(train_set) > config.batch_size) or lonely
    train = make_loader(
        train_set, micro, shuffle=True, num_workers=config.num_workers, sampler=sampler, drop_last=drop_last
    )
    val = make_loader(val_set, max(64, config.batch_size), num_workers=config.num_workers, sampler=val_share)
    if config.target is not None and config.adaptation != SOURCE_ONLY:
        train = with_target(train, config, train_transform, size, micro)
    return train, val


def _select_among_adapted(best: BestWeights, history: list[dict], feature_phases: set[str]) -> None:
    """Domain adaptation keeps the best epoch of its image phases, for every method alike (the source-only
    baseline included): a head epoch on frozen features, often best on the source's validation loss, would leave a
    backbone the alignment never touched."""
    if 0 < best.best_epoch <= len(history) and history[best.best_epoch - 1]["phase"] in feature_phases:
        best.best_loss = float("inf")


def _batches(loader) -> int:
    """Batches per epoch (Lightning's CombinedLoader of a source + target loader only knows its length once
    iterated)."""
    iterables = getattr(loader, "iterables", None)
    return min(len(i) for i in iterables.values()) if isinstance(iterables, dict) else len(loader)  # equal lengths


def _stream_loaders(phase: Phase, splits: DataSplits, config: TrainConfig, data_config: dict, transform, size: int):
    """Loaders over shards: training streams each rank's share through a shuffle buffer sized for memory, the same
    number of batches on every rank; validation streams in shares whose positions put the outputs back in order."""
    from graftcv.data.shard_sets import ordered
    from graftcv.data.shard_stream import ShardImageStream
    from graftcv.data.shards import shuffle_buffer_for

    if config.balance == "sampler":
        raise GraftcvError("--balance sampler needs the images by index; shards stream them: use --balance weights.")
    rank, world = distributed.rank(), distributed.size()
    micro, _ = micro_batching(config, phase)
    workers = default_workers() if config.num_workers is None else config.num_workers
    split = splits.train.stream
    buffer = shuffle_buffer_for(
        mean_sample_bytes=split.mean_sample_bytes, split_size=len(split), buffers=max(1, workers)
    )
    length = math.ceil(len(split) / world)
    if config.mixup or config.cutmix:  # whole batches only (timm's Mixup pairs images): the tail waits a shuffle
        length = max(micro, length // micro * micro)
    train_set = ShardImageStream(
        split, splits.classes, transform, draft_size=size, shuffle_buffer=buffer, seed=config.seed, rank=rank,
        world=world, epoch_length=length, batch_size=micro,
    )  # fmt: skip
    val_set = ordered(splits.val.stream, splits.classes, build_transform(data_config), size, rank, world)
    train = make_loader(train_set, micro, num_workers=config.num_workers)
    return train, make_loader(val_set, max(64, config.batch_size), num_workers=config.num_workers)


def _rank_samplers(n_train: int, n_val: int, sampler, seed: int):
    """Under DDP, each rank's training sampler (Lightning's own replacement is off: it would pad validation with
    repeats) and its contiguous, unpadded block of the validation set; on one process, the samplers unchanged."""
    world = distributed.size()
    if world <= 1:
        return sampler, None
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from torch.utils.data import DistributedSampler

    rank = distributed.rank()
    if sampler is None:
        sampler = DistributedSampler(range(n_train), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = DistributedSamplerWrapper(sampler, num_replicas=world, rank=rank, shuffle=False)
    return sampler, distributed.block(n_val)


def train_phases(
    model: nn.Module,
    phases: list[Phase],
    splits: DataSplits,
    config: TrainConfig,
    data_config: dict,
    cached: tuple[np.ndarray, np.ndarray] | None,
    checkpoints: Path | None = None,
    resume: bool = False,
    timing: Timing | None = None,
) -> GradientOutcome:
    """Train `model` in place through every phase; it ends holding the weights of the best validation
    epoch of the whole run (by loss), whichever phase that was in.

    With `checkpoints`, image phases save their state after every epoch and each finished phase is
    recorded, so `resume` continues a killed run from its last epoch; the folder is removed at the end.
    """
    y_train = np.array(splits.train.targets(splits.classes))
    module = build_module(model, config, y_train, len(splits.classes), splits.tasks)
    if distributed.size() > 1:  # the same images per optimizer step as on one process, so the same recipe holds
        config = replace(config, batch_size=max(1, config.batch_size // distributed.size()))
    time_limit = parse_duration(config.max_time)
    started = time.perf_counter()
    history: list[dict] = []
    val_probs, best_epoch, lr_found, done = None, 0, None, 0
    best = BestWeights()
    states = EpochStates(SOUP_INGREDIENTS) if config.snapshots else None
    cycles_from = first_cycle(phases) if states is not None else len(phases)
    if resume and checkpoints is not None and (checkpoints / PROGRESS).is_file():
        saved = load_state(checkpoints / PROGRESS)
        done, history, lr_found = saved["phases_done"], saved["history"], saved["lr_found"]
        model.load_state_dict(saved["model"])
        best.load_state_dict(saved["best"])
        if states is not None and "snapshots" in saved:
            states.load_state_dict(saved["snapshots"])
        started -= saved["seconds"]
        if best.val_probs is not None:
            val_probs, best_epoch = best.val_probs.numpy(), best.best_epoch
    full = config.training_size(data_config["input_size"][-1])  # the training size that progressive resizing ends at
    trainer_options = {"devices": config.devices, "accelerator": config.accelerator, "precision": config.precision}
    for index, phase in enumerate(phases):
        if index < done:
            continue
        left = None
        if time_limit is not None:
            left = time_limit - timedelta(seconds=time.perf_counter() - started)
            if left.total_seconds() < 1 and val_probs is not None:
                break
            left = max(left, timedelta(seconds=1))
        fraction = 1.0
        if timing is not None and not phase.on_features:
            planned = _planned(phase, phases[index:], splits, config, timing, full, must_run=val_probs is None)
            if planned is None:
                continue
            phase, fraction, budget_left = planned
            if budget_left is not None:
                left = budget_left if left is None else min(left, budget_left)
        if not phase.on_features:
            phase = replace(phase, sizes=planned_sizes(config.progressive_resize, full, phase.epochs))
            if timing is not None:
                _announce_phase(phase, fraction, splits, timing, sum(p.epochs for p in phases[index + 1 :]))
        train_loader, val_loader = make_loaders(phase, splits, config, data_config, cached)
        if config.target is not None and not phase.on_features:  # every method of `adapt`, source-only too
            _select_among_adapted(best, history, {p.name for p in phases if p.on_features})
        fraction = max(fraction, 1.0 / max(1, _batches(train_loader)))  # at least one batch per epoch
        if config.lr == "auto" and index == len(phases) - 1:
            if lr_found is None:
                from graftcv.training.lr_find import find_lr

                lr_found = find_lr(module, phase, train_loader, **trainer_options).suggestion
            phase = Phase(**{**phase.__dict__, "lr": lr_found})
        # phases on cached features take seconds: they rerun rather than checkpoint every epoch
        checkpoint = checkpoints / f"phase{index}-last.ckpt" if checkpoints and not phase.on_features else None
        result = run_phase(
            module,
            phase,
            train_loader,
            val_loader,
            patience=None if index >= cycles_from else config.patience,  # a cycle runs to its low-rate end
            max_time=left,
            epoch_offset=len(history),
            started=started,
            progress=config.progress,
            best=best,
            checkpoint=checkpoint,
            resume=resume,
            accumulate=micro_batching(config, phase)[1],
            fraction=fraction,
            clock=timing.clock if timing is not None and not phase.on_features else None,  # feature epochs: seconds
            states=states if index >= cycles_from else None,
            **trainer_options,
        )
        history.extend(result.history)
        if result.val_probs is not None:
            val_probs, best_epoch = result.val_probs, result.best_epoch
        if checkpoints is not None and distributed.is_main():
            progress = {
                "phases_done": index + 1,
                "history": history,
                "lr_found": lr_found,
                "seconds": time.perf_counter() - started,
                "model": model.state_dict(),
                "best": best.state_dict(),
                **({"snapshots": states.state_dict()} if states is not None else {}),
            }
            save_state(progress, checkpoints / PROGRESS)
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
    distributed.barrier()  # every rank has read its checkpoints before rank 0 removes them
    if checkpoints is not None and distributed.is_main():
        shutil.rmtree(checkpoints, ignore_errors=True)
    return GradientOutcome(history, val_probs, len(history), best_epoch, lr_found, states)


def _planned(
    phase: Phase,
    remaining: list[Phase],
    splits: DataSplits,
    config: TrainConfig,
    timing: Timing,
    full: int,
    must_run: bool,
) -> tuple[Phase, float, timedelta | None] | None:
    """The phase as the budget allows (epochs, share of each epoch, a hard stop a little past its share of the
    time left), or None when not even a tenth of an epoch fits and an earlier phase already gave a model
    (`must_run` False); without a budget, the phase as planned."""
    if timing.deadline is None:
        return phase, 1.0, None
    image_epochs = sum(p.epochs for p in remaining if not p.on_features) or 1
    available = (timing.deadline - time.perf_counter()) * phase.epochs / image_epochs
    cap = config.epochs or phase.epochs * MAX_EPOCH_FACTOR

    def plan_for(epochs: int) -> EpochPlan:  # progressive resizing: the epochs' mean cost depends on their count
        rates = timing.rates.over(planned_sizes(config.progressive_resize, full, epochs))
        return plan_epochs(available, len(splits.train), len(splits.val), rates, cap)

    plan = plan_for(cap)
    if not plan.skipped and plan.epochs != cap:
        plan = plan_for(plan.epochs)
    if plan.skipped and must_run:
        log.warning("The budget is shorter than a tenth of an epoch: one short epoch runs all the same.")
        plan = EpochPlan(1, MIN_EPOCH_FRACTION)
    if plan.skipped:
        log.warning(
            "The budget leaves %s for the %s phase, under a tenth of an epoch (%s): it is skipped and the model "
            "so far is kept.",
            format_seconds(available),
            phase.name,
            format_seconds(epoch_seconds(len(splits.train), len(splits.val), timing.rates)),
        )
        return None
    return replace(phase, epochs=plan.epochs), plan.fraction, timedelta(seconds=max(1.0, available * 1.1))


def _announce_phase(phase: Phase, fraction: float, splits: DataSplits, timing: Timing, later: int) -> None:
    """Point the run's clock at this phase and the `later` image epochs (snapshot cycles), say what the budget chose."""
    seconds = epoch_seconds(len(splits.train), len(splits.val), timing.rates.over(phase.sizes), fraction)
    timing.clock.epoch, timing.clock.epochs_left = seconds, phase.epochs + later
    if timing.deadline is not None:
        share = "" if fraction >= 1 else f", each on {math.floor(fraction * 100)}% of the training images"
        log.info("Budget: %d %s epoch(s)%s, about %s each.", phase.epochs, phase.name, share, format_seconds(seconds))
