"""One predicting process of a bulk prediction: the model loaded once, images decoded beside it, a part's
images in, the part's file out."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from graftcv.bulk.parts import part_table, write_part
from graftcv.bulk.sources import Part
from graftcv.data.images import load_rgb
from graftcv.data.shards import Sample, decode
from graftcv.data.transforms import decode_size

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Settings:
    """What every predicting process needs (plain values: they travel to spawned processes)."""

    model_dir: str
    runtime: str
    parts: str
    topk: int
    batch_size: int
    threads: int | None
    processes: int
    local_rank: int | None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what SLURM or a container grants, not the whole machine
    except AttributeError:
        return os.cpu_count() or 1


def _reason(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "missing file"
    return str(error).split("\n")[0][:200] or type(error).__name__


@dataclass
class Decoder:
    """An image path (or a shard's sample) → (the model's input array, None), or (a blank input, why it failed).
    Picklable, for DataLoader workers."""

    transform: Callable
    side: int
    shape: tuple[int, ...]

    def __call__(self, item: str | Sample) -> tuple[np.ndarray, str | None]:
        try:
            image = load_rgb(item, self.side) if isinstance(item, str) else decode(item, self.side)
            array = self.transform(image)
        except DECODE_ERRORS as error:
            return np.zeros(self.shape, np.float32), _reason(error)
        return (array.numpy() if hasattr(array, "numpy") else array), None


class _Listed:
    """A part's paths as a map-style dataset of decoded inputs (what DataLoader takes)."""

    def __init__(self, paths: list[str], decoder: Decoder) -> None:
        self.paths, self.decoder = paths, decoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str | None]:
        return self.decoder(self.paths[index])


def shard_row(shard: str, sample: Sample) -> str:
    """The path column of a shard's sample: its original name, then where it is stored (shard#key)."""
    return f"{sample.name} ({shard}#{sample.key})"


def _collate(rows: list) -> list:
    return rows


class Engine:
    """One process's model, loaded once, and its decoding: a part's images → the part's file.

    The model's own code runs: LitePredictor (onnxruntime, no torch) for an exported model, else
    `graftcv.load(runtime="torch")` with its forward pass (on onnxruntime too, checked, where a CPU pass is long
    enough to pay for the export); preprocessing is theirs too (`lite.preprocess`, `build_transform`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loader_workers, self.fast, self.model = 0, None, None
        if settings.runtime == "onnx":
            from graftcv.lite import LitePredictor, preprocess

            predictor = LitePredictor.open(settings.model_dir, threads=settings.threads)
            self.classes, config = predictor.classes, predictor.data_config
            transform: Callable = partial(preprocess, data_config=config)
            self.forward: Callable[[np.ndarray], np.ndarray] = predictor.runner
        else:
            import torch

            from graftcv.data.loaders import inference_workers
            from graftcv.data.transforms import build_transform
            from graftcv.model import load

            if settings.threads:
                torch.set_num_threads(settings.threads)
            device = None
            if settings.local_rank is not None and torch.cuda.is_available():
                device = f"cuda:{settings.local_rank % torch.cuda.device_count()}"
            self.model = load(settings.model_dir, device=device, runtime="torch")
            self.classes, config = self.model.classes, self.model.data_config
            transform = build_transform(config)
            self.forward = self._torch_forward
            # Several processes already decode side by side; one alone gets DataLoader workers where they pay.
            self.loader_workers = inference_workers() if settings.processes == 1 else 0
        self.decoder = Decoder(transform, decode_size(config), tuple(config["input_size"]))
        self.decoding_threads = min(4, max(2, settings.threads or cores()))

    def _torch_forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(batch)
        probs = self.fast(tensor) if self.fast is not None else None
        return (probs if probs is not None else self.model._probs(tensor)).numpy()

    def _use_onnx_for(self, count: int) -> None:
        """The in-memory ONNX export Model.predict_proba uses on a long CPU pass, made once per process."""
        from graftcv.onnx_forward import CheckedOnnx

        if self.fast is None and CheckedOnnx.worth_it(self.model.network, self.model.device, count):
            self.fast = CheckedOnnx(self.model.network, tuple(self.model.data_config["input_size"]))

    def _threaded(self, items: Iterable) -> Iterator[tuple[list, list]]:
        """(items, decoded) a batch at a time, decoded on threads (PIL lets go of the GIL), the next batch while
        the model runs on this one."""
        stream, size = iter(items), self.settings.batch_size
        with ThreadPoolExecutor(max_workers=self.decoding_threads) as pool:
            ahead: deque = deque()
            while True:
                while len(ahead) < 2 and (chunk := list(islice(stream, size))):
                    ahead.append((chunk, [pool.submit(self.decoder, item) for item in chunk]))
                if not ahead:
                    return
                chunk, futures = ahead.popleft()
                yield chunk, [future.result() for future in futures]

    def _loaded(self, paths: list[str]) -> Iterator[tuple[list, list]]:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _Listed(paths, self.decoder),
            batch_size=self.settings.batch_size,
            num_workers=self.loader_workers,
            collate_fn=_collate,
        )
        for start, decoded in zip(range(0, len(paths), self.settings.batch_size), loader, strict=True):
            yield paths[start : start + len(decoded)], decoded

    def run(self, part: Part, advance: Callable[[int], None]) -> tuple[int, int]:
        """Predict one part and write its file; (images, error rows)."""
        if self.model is not None:
            self._use_onnx_for(part.count)
        if part.shard is not None:
            from graftcv.data.shards import iter_samples

            batches = self._threaded(iter_samples(part.shard))
        else:
            batches = self._loaded(part.paths) if self.loader_workers else self._threaded(part.paths)
        tables, errors = [], 0
        for items, decoded in batches:
            names = items if part.shard is None else [shard_row(part.shard, sample) for sample in items]
            probs = self.forward(np.stack([array for array, _ in decoded]))
            reasons = [reason for _, reason in decoded]
            tables.append(part_table(names, np.asarray(probs), reasons, self.classes, self.settings.topk))
            errors += sum(reason is not None for reason in reasons)
            advance(len(names))
        write_part(Path(self.settings.parts), part, tables)
        return sum(t.num_rows for t in tables), errors
