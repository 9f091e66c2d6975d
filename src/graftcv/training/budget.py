"""Time arithmetic of a run: its estimate before it starts, the epochs a --budget buys, the whole run's ETA."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from graftcv.training.resizing import relative_cost

# Below this share of an epoch, a main phase teaches little that the head phase has not: it is skipped.
MIN_EPOCH_FRACTION = 0.1
# A run without --epochs may be given up to this many times its strategy's epochs when the budget allows them;
# early stopping ends it sooner when validation loss stops improving.
MAX_EPOCH_FACTOR = 3
# Writing the artifact, the evaluation files, the summary and the CLI's report.html, in seconds (measured 3-6 s
# on a 2-core CPU; bench/RESULTS.md, issue 15).
SAVE_SECONDS = 6.0


@dataclass(frozen=True)
class Throughput:
    """Images per second of a training step (augmented, at the training size) and of a forward pass."""

    train: float
    forward: float
    features: float  # the feature pass, whose runtime (onnxruntime) may be faster than a torch forward
    # progressive resizing: (smallest size, full size, training images/s at the smallest size); `train` is at full
    small_train: tuple[int, int, float] | None = None

    def over(self, sizes: tuple[int, ...]) -> Throughput:
        """These rates with `train` the mean over epochs at `sizes` (as measured at the two ends of the ramp)."""
        if self.small_train is None or not sizes or not math.isfinite(self.train):
            return self
        small, full, small_rate = self.small_train
        cost = relative_cost(sizes, full, small_rate, self.train, small)
        return replace(self, train=self.train / cost, small_train=None)


@dataclass(frozen=True)
class Workload:
    """What a run will push through the backbone: images per split and the epochs of each kind of phase."""

    n_train: int
    n_val: int
    n_test: int
    feature_images: int  # images the feature pass still has to compute (cached ones cost nothing)
    image_epochs: int  # epochs over images (fine-tuning); feature epochs cost next to nothing
    test_on_features: bool = False  # closed-form heads score the test split from the feature pass


@dataclass(frozen=True)
class Estimate:
    """Seconds of each stage and the total."""

    features: float
    epoch: float
    epochs: int
    test: float

    @property
    def total(self) -> float:
        return self.features + self.epoch * self.epochs + self.test + SAVE_SECONDS


@dataclass(frozen=True)
class EpochPlan:
    """Epochs of the main phase, and the share of the training images each epoch draws (1.0: all of them)."""

    epochs: int
    fraction: float

    @property
    def skipped(self) -> bool:
        return self.epochs == 0


def epoch_seconds(n_train: int, n_val: int, rates: Throughput, fraction: float = 1.0) -> float:
    """One epoch: the training images (or a share of them) at the training rate, then validation."""
    return fraction * n_train / rates.train + n_val / rates.forward


def test_seconds(work: Workload, rates: Throughput) -> float:
    return 0.0 if work.test_on_features else work.n_test / rates.forward


def estimate(work: Workload, rates: Throughput) -> Estimate:
    """What the run will take at these rates, before it starts."""
    features = work.feature_images / rates.features if work.feature_images else 0.0
    epoch = epoch_seconds(work.n_train, work.n_val, rates) if work.image_epochs else 0.0
    return Estimate(features, epoch, work.image_epochs, test_seconds(work, rates))


def plan_epochs(available: float, n_train: int, n_val: int, rates: Throughput, max_epochs: int) -> EpochPlan:
    """The most training `available` seconds buy, up to `max_epochs`: whole epochs while they fit, else one more
    epoch than fits whole with each epoch drawing a share of the training images, so that the phase ends close
    to its deadline instead of up to one epoch early (a schedule such as one-cycle then still anneals to its
    end). No epochs when not even a tenth of one fits."""
    whole = epoch_seconds(n_train, n_val, rates)
    if available >= whole * max_epochs:
        return EpochPlan(max_epochs, 1.0)
    epochs = max(1, math.ceil(available / whole))
    train_seconds = available / epochs - n_val / rates.forward
    fraction = train_seconds * rates.train / n_train if n_train else 0.0
    if fraction < MIN_EPOCH_FRACTION:
        if epochs == 1:
            return EpochPlan(0, 0.0)
        epochs = max(1, math.floor(available / whole))
        fraction = min(1.0, (available / epochs - n_val / rates.forward) * rates.train / n_train)
    return EpochPlan(epochs, round(min(1.0, fraction), 4))


def format_seconds(seconds: float) -> str:
    """42s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class RunClock:
    """The whole run's remaining time, for the progress display: epochs still to come at the latest measured
    epoch time, plus what follows training (test pass and saving)."""

    after_training: float  # seconds of the stages after the last epoch
    epoch: float = 0.0  # the latest epoch's seconds (the estimate's until one has run)
    epochs_left: int = 0

    def eta(self, epoch_progress: float = 0.0) -> float:
        """Seconds left, `epoch_progress` (0-1) of the current epoch done."""
        return max(0.0, (self.epochs_left - epoch_progress) * self.epoch) + self.after_training


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports count against a budget); 0.0 where
    the operating system does not say (Linux's /proc does)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


_count_from_process_start = False


def count_from_process_start() -> None:
    """Make budgets and estimates include the process's own start-up: what the CLI does, where a user times
    the whole command. In Python, a budget counts from the `fit` call."""
    global _count_from_process_start
    _count_from_process_start = True


@contextmanager
def budgets_count_from_fit() -> Iterator[None]:
    """Within this block each `fit` counts its budget from its own start: for runs that fit several members in one
    process (a preset's ensemble), whose later members would otherwise find the process's age already spent."""
    global _count_from_process_start
    saved, _count_from_process_start = _count_from_process_start, False
    try:
        yield
    finally:
        _count_from_process_start = saved


def run_origin(fit_started: float) -> float:
    """The perf_counter moment the run's clock started: the process start under the CLI, else `fit`'s start."""
    return time.perf_counter() - process_age() if _count_from_process_start else fit_started


def deadline_for(budget_seconds: float, after_training: float, origin: float) -> float:
    """The perf_counter moment training must end by so that a run whose clock started at `origin`, with
    `after_training` seconds of work after its last epoch, ends within `budget_seconds`."""
    return origin + budget_seconds - after_training
