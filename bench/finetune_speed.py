"""Fine-tuning throughput per lever (issue 15): training images/s of the finetune phase, one lever at a time.

.venv/bin/python bench/finetune_speed.py --data ../shared/datasets/flowers5 --size 224 --steps 14

Each row trains the default finetune phase (all groups, discriminative LRs, frozen BatchNorm) of
EfficientNet-Lite0 for --steps optimizer steps of 32 images through graftcv's own module and loaders, and
times the steps after the first two (allocation warm-up). Rows run one after another on the same images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import torch

from graftcv.data import DataSplits, evenly_spaced, read_labelled
from graftcv.fitting import prepare, targets
from graftcv.training.gradient import build_module, make_loaders, micro_batching
from graftcv.training.runner import quiet_lightning

LEVERS: dict[str, dict] = {
    "before (224 px, every layer, micro-batch 16)": {"freeze_stem": False, "train_size": 224},
    "stem + stride-4 stages frozen": {"freeze_stem": True, "train_size": 224},
    "train at 176 px (evaluate at 224)": {"freeze_stem": False, "train_size": 176},
    "both": {"freeze_stem": True, "train_size": 176},
    "both + micro-batch 32": {"freeze_stem": True, "train_size": 176, "micro_batch": 32},
    "both, decoding inline (0 workers)": {"freeze_stem": True, "train_size": 176, "num_workers": 0},
    "both, 2 decoding workers": {"freeze_stem": True, "train_size": 176, "num_workers": 2},
    "both, 1 torch thread": {"freeze_stem": True, "train_size": 176, "threads": 1},
    "both + torch.compile": {"freeze_stem": True, "train_size": 176, "compile": True},
    "progressive resizing stage: 128 px": {"freeze_stem": True, "train_size": 128},
    "progressive resizing stage: 160 px": {"freeze_stem": True, "train_size": 160},
    "progressive resizing stage: 192 px": {"freeze_stem": True, "train_size": 192},
}


class StepClock(L.Callback):
    """Wall time of the optimizer steps after the first `skip`."""

    def __init__(self, skip: int) -> None:
        self.skip, self.images, self.started, self.seen = skip, 0, None, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.started is not None:
            self.images += len(batch[1])

    def rate(self) -> float:
        return self.images / (time.perf_counter() - self.started)


def measure(splits: DataSplits, size: int, steps: int, lever: dict) -> tuple[float, float]:
    """(training images/s, seconds before the first step) of one lever."""
    options = {k: v for k, v in lever.items() if k not in ("threads", "compile")}
    prep = prepare(splits, {"size": size, "progress": False, **options})
    phase = prep.phases[-1]  # the finetune phase
    threads = torch.get_num_threads()
    torch.set_num_threads(lever.get("threads", threads))
    try:
        module = build_module(prep.backbone.model, prep.config, targets(prep, "train"), len(prep.splits.classes))
        if lever.get("compile"):
            module.model.compile()  # in place: parameter names (and so the layer groups) stay as they are
        module.start_phase(phase)
        train_loader, _ = make_loaders(phase, prep.splits, prep.config, prep.backbone.data_config, None)
        micro, accumulate = micro_batching(prep.config, phase)
        clock = StepClock(skip=2 * accumulate)
        started = time.perf_counter()
        with quiet_lightning():
            trainer = L.Trainer(
                max_epochs=1, limit_train_batches=steps * accumulate, limit_val_batches=0, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                accumulate_grad_batches=accumulate, callbacks=[clock], accelerator="cpu", devices=1,
            )  # fmt: skip
            trainer.fit(module, train_loader)
        return clock.rate(), clock.started - started
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/flowers5"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps of 32 images per row")
    parser.add_argument("--only", help="comma-separated row numbers (1-based)")
    args = parser.parse_args()
    images, _ = read_labelled(args.data)
    chosen = evenly_spaced(list(range(len(images))), 32 * args.steps + 64)
    train, val = images.subset(chosen[:-64]), images.subset(chosen[-64:])
    splits = DataSplits.from_sets(train, val, source=str(args.data))
    rows = list(LEVERS.items())
    if args.only:
        rows = [rows[int(i) - 1] for i in args.only.split(",")]
    print(f"{args.data.name}, {len(train)} training images, eval size {args.size}, {torch.get_num_threads()} threads\n")
    print("| lever | train px | images/s | × before | s before first step |")
    print("|---|---|---|---|---|")
    base = None
    for name, lever in rows:
        rate, setup = measure(splits, args.size, args.steps, lever)
        base = base or rate
        size = lever.get("train_size") or args.size
        print(f"| {name} | {size} | {rate:.1f} | {rate / base:.2f} | {setup:.1f} |", flush=True)


if __name__ == "__main__":
    main()
