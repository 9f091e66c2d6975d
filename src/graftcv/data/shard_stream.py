"""ShardImageStream: a shard split as a torch IterableDataset of (image tensor, target), split by rank and worker."""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Callable, Iterator

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from graftcv.data.shards import Sample, ShardSplit, decode, iter_samples
from graftcv.errors import GraftcvError

# Shards are dealt out between parts (ranks, or a rank's workers) only when the smallest part then holds at least
# this share of the largest's samples; otherwise every part reads them all and keeps every n-th sample (each shard is
# read n times, but 2 shards of 1000 and 10 images never give one rank 10 images to repeat 100 times an epoch).
BALANCE = 0.75


def deal(shards: list[tuple[str, int]], part: int, parts: int) -> tuple[list[tuple[str, int]], tuple[int, int] | None]:
    """The (url, count) shards part `part` of `parts` reads, and (part, parts) when it keeps every parts-th
    sample of them instead of reading shards of its own."""
    if parts == 1:
        return shards, None
    if len(shards) >= parts:
        shares = [sum(count for _, count in shards[i::parts]) for i in range(parts)]
        if min(shares) >= BALANCE * max(shares):
            return shards[part::parts], None
    return shards, (part, parts)


class ShardImageStream(IterableDataset):
    """(image tensor, target) of one shard split for one rank, split again over the DataLoader's workers.

    Every (rank, worker) pair sees a disjoint part of the split and together they see all of it once an epoch (see
    `deal`). With `shuffle_buffer` > 0 the shard order is shuffled and then the samples, through webdataset's
    shuffle buffer of that many encoded samples per worker, seeded by (seed, epoch): `set_epoch` changes both.
    With 0 the order is the split's (validation, test). `epoch_length` (samples per rank per epoch) makes each rank
    cycle its part and stop after exactly that many, so that DDP ranks take the same number of steps; give
    `batch_size` (the DataLoader's) too and the workers' shares are whole batches, so the loader yields exactly
    ceil(epoch_length / batch_size) batches, what `len(loader)` says. Targets index `classes` by label name."""

    def __init__(
        self,
        split: ShardSplit,
        classes: list[str],
        transform: Callable,
        draft_size: int | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        epoch_length: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if world < 1 or not 0 <= rank < world:
            raise GraftcvError(f"Rank {rank} of {world} is not a process of the run: 0 <= rank < world is needed.")
        if (epoch_length is not None and epoch_length < 1) or shuffle_buffer < 0 or (batch_size or 1) < 1:
            raise GraftcvError("epoch_length and batch_size must be at least 1, and the shuffle buffer not negative.")
        self.index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(label for label, n in split.class_counts.items() if n and label not in self.index)
        if unknown:
            raise GraftcvError(f"The {split.name} shards have classes not in training: {', '.join(unknown[:5])}.")
        self.split, self.transform, self.draft_size = split, transform, draft_size
        self.shuffle_buffer, self.seed, self.rank, self.world = shuffle_buffer, seed, rank, world
        self.epoch_length, self.batch_size = epoch_length, batch_size
        # In shared memory, so that set_epoch reaches DataLoader workers that persist across epochs.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration runs (call it before iterating the loader: Lightning calls `set_epoch` on
        samplers only, never on an IterableDataset)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def __len__(self) -> int:
        """Samples of this rank an epoch: `epoch_length`, else ceil(split size / world), exact when the samples are
        dealt out one by one and an estimate when shards of unequal size are (give epoch_length for DDP)."""
        return self.epoch_length if self.epoch_length is not None else math.ceil(len(self.split) / self.world)

    def quota(self, worker: int, workers: int) -> int | None:
        """Samples worker `worker` of `workers` yields an epoch with `epoch_length`; None without one."""
        if self.epoch_length is None:
            return None
        total, size = self.epoch_length, self.batch_size
        if not size:
            return total // workers + (1 if worker < total % workers else 0)
        batches = math.ceil(total / size)  # the loader takes batch i from worker i % workers
        return sum(size if i < batches - 1 else total - (batches - 1) * size for i in range(worker, batches, workers))

    def samples(self, worker: int | None = None, workers: int | None = None) -> Iterator[Sample]:
        """The encoded samples this rank's worker yields this epoch, in order (before decoding); `worker` and
        `workers` default to the DataLoader worker this runs in (0 of 1 in the main process)."""
        if worker is None or workers is None:
            info = get_worker_info()
            worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, quota = self.epoch, self.quota(worker, workers)
        if quota is None:
            yield from self._pass(epoch, worker, workers, 0)
            return
        produced, cycle, everything = 0, 0, False
        while produced < quota:
            before = produced
            for sample in self._pass(epoch, worker, workers, cycle, everything):
                yield sample
                produced += 1
                if produced == quota:
                    return
            if produced == before:
                if everything:
                    raise GraftcvError(f"The {self.split.name} shards hold no samples.")
                everything = True  # fewer samples than ranks x workers left this part none: it repeats others
            cycle += 1

    def _pass(self, epoch: int, worker: int, workers: int, cycle: int, everything: bool = False) -> Iterator[Sample]:
        """One pass over this (rank, worker)'s part: the rank's share of the shards, then the worker's of those."""
        shards = list(zip(self.split.urls, self.split.counts, strict=True))
        if self.shuffle_buffer:
            random.Random(f"{self.seed}:{epoch}:{cycle}").shuffle(shards)  # the same order on every rank
        every = []
        if not everything:
            shards, by_rank = deal(shards, self.rank, self.world)
            shards, by_worker = deal(shards, worker, workers)
            every = [part for part in (by_rank, by_worker) if part is not None]
        stream: Iterator[Sample] = iter_samples([url for url, _ in shards])
        for part, parts in every:
            stream = itertools.islice(stream, part, None, parts)
        if self.shuffle_buffer:
            import webdataset as wds

            rng = random.Random(f"{self.seed}:{epoch}:{cycle}:{self.rank}:{worker}")
            stream = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(stream)
        return stream

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        for sample in self.samples():
            yield self.transform(self._image(sample)), self.index[sample.label]

    def _image(self, sample: Sample) -> Image.Image:
        try:
            return decode(sample, self.draft_size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            # Checked when the shards were written; one damaged since must not kill a long epoch.
            warnings.warn(f"Could not decode {sample.name} ({error}); using a blank image.", stacklevel=2)
            return Image.new("RGB", (self.draft_size or 224,) * 2, (128, 128, 128))
