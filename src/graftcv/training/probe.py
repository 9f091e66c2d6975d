"""A few seconds of measured throughput before a run: training steps and forward passes on the run's own images."""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch
from torch.utils.data import DataLoader

from graftcv.training.budget import Throughput
from graftcv.training.module import TransferModule
from graftcv.training.phase import Phase

# Whole epochs train slower than the probe's bare forward/backward steps (optimizer steps, Lightning's loop and
# logging, a fresh decoding worker): 0.85-0.88 of the probe's rate at 128 and 224 px on art_painting, and runs
# planned without this took 4-11% longer than estimated (bench/RESULTS.md, issue 15).
EPOCH_PACE = 0.87
# onnxruntime's feature pass against a PyTorch forward, decoding included (bench/RESULTS.md, issue 15: 2.32x)
ONNX_FEATURE_SPEEDUP = 2.0


def _probe_batch(batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, source images counted): a source + target batch of `graftcv adapt` (Lightning's
    CombinedLoader yields (batch, index, loader index)) runs as one pass over both, as its training step does,
    and counts its source images, in which epochs are measured."""
    if isinstance(batch, tuple) and len(batch) == 3 and isinstance(batch[0], dict):
        (xs, ys), xt = batch[0]["source"], batch[0]["target"][0]
        return torch.cat([xs, xt]), torch.cat([ys, ys.new_zeros(len(xt))]), len(ys)
    x, y = batch
    return x, y, len(y)


def _timed_batches(loader: DataLoader, warmup: int, timed: int, step) -> float:
    """Images per second over `timed` batches after `warmup` ones, loading included (as in an epoch); over
    every batch when the loader has no more than the warm-up."""
    seconds: list[tuple[int, float]] = []
    clock = time.perf_counter()
    for index, batch in enumerate(loader):
        x, y, images = _probe_batch(batch)
        step(x, y)
        now = time.perf_counter()
        seconds.append((images, now - clock))
        clock = now
        if index + 1 >= warmup + timed:
            break
    counted = seconds[warmup:] or seconds
    return sum(n for n, _ in counted) / max(sum(t for _, t in counted), 1e-6) if counted else float("nan")


def measure_throughput(
    module: TransferModule,
    phase: Phase | None,
    train_loader: DataLoader | None,
    eval_loader: DataLoader,
    onnx_features: bool,
    timed: int = 4,
    sizes: tuple[int, ...] = (),
) -> Throughput:
    """Training images/s of `phase` (on a copy of the module's network, so no weight moves) and forward
    images/s at the evaluation size, both at the pace of whole epochs (`EPOCH_PACE`). `sizes`: the epochs'
    training sizes under progressive resizing; the loader gives the largest, and the smallest is timed too, on
    the same batches shrunk the way training shrinks them. Loaders should not keep workers: each probe starts
    its own."""
    network = copy.deepcopy(module.model).to(memory_format=torch.channels_last)
    train_rate, small_train = float("nan"), None
    if phase is not None and train_loader is not None:
        probe = TransferModule(network, module.groups, module.optim, bn=module.bn, frozen_bottom=module.frozen_bottom)
        probe.loss = module.loss
        probe.start_phase(phase)
        network.train()
        probe._set_norm_modes()

        def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
            x = probe.train_input(x)
            loss = probe.loss(network(x.contiguous(memory_format=torch.channels_last)), y)
            loss.backward()
            network.zero_grad(set_to_none=True)

        # past the batches a decoding worker prefetches while the first step runs, so that decoding is timed too
        train_rate = _timed_batches(train_loader, 3, timed, train_step) * EPOCH_PACE
        if sizes and min(sizes) < max(sizes):
            probe.phase = replace(phase, sizes=(min(sizes),))  # the epoch-0 size train_input shrinks to
            small_rate = _timed_batches(train_loader, 2, max(2, timed - 1), train_step) * EPOCH_PACE
            small_train = (min(sizes), max(sizes), small_rate)
    network.eval()

    def forward(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.inference_mode():
            network(x.contiguous(memory_format=torch.channels_last))

    forward_rate = _timed_batches(eval_loader, 1, 1, forward)
    feature_rate = forward_rate * (ONNX_FEATURE_SPEEDUP if onnx_features else 1.0)
    return Throughput(train=train_rate, forward=forward_rate, features=feature_rate, small_train=small_train)
