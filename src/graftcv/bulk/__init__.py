"""Predicting millions of images into one Parquet file: the source streamed in numbered parts, each written as its
own file so that a killed run resumes where it stopped, on several processes of one machine and on several ranks
(torchrun, SLURM) sharing a file system.

sources (what is read, as a stream) · parts (the parts folder, its plan, the merge) · engine (one predicting
process) · workers (this process, or several)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from functools import partial
from pathlib import Path

from rich.progress import TimeRemainingColumn

from graftcv.bulk.engine import Settings, cores
from graftcv.bulk.parts import PLAN_FILE, check_plan, merge, part_done, part_index, parts_dir, wait_for_parts
from graftcv.bulk.sources import PathSource, ShardSource, open_source
from graftcv.bulk.workers import Inline, Processes
from graftcv.errors import GraftcvError
from graftcv.lite import choose_runtime
from graftcv.meta import META_FILE, read_meta
from graftcv.progress import image_progress

log = logging.getLogger("graftcv")
RANK_TIMEOUT = 6 * 3600.0  # rank 0 waits this long for a new part of the other ranks before giving up
__all__ = ["predict_to_parquet", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks, from torchrun's (or SLURM's) environment; (0, 1) alone."""
    for world_name, rank_name in (("WORLD_SIZE", "RANK"), ("SLURM_NTASKS", "SLURM_PROCID")):
        world, rank = os.environ.get(world_name, ""), os.environ.get(rank_name, "0")
        if world.isdigit() and int(world) > 1:
            if not rank.isdigit() or int(rank) >= int(world):
                raise GraftcvError(f"{rank_name}={rank!r} is not a rank of {world_name}={world}.")
            return int(rank), int(world)
    return 0, 1


def _count_for_bar(source: PathSource | ShardSource, size: int, rank: int, world: int, done: set, bar, task) -> None:
    """The images this rank has left, for the bar's total and ETA (on a thread: a folder is listed once more)."""
    sizes = source.sizes(size)
    bar.update(task, total=sum(sizes[i] for i in range(rank, len(sizes), world) if i not in done))


def _ready_parts(out: Path, parts: Path, plan: dict, rank: int, world: int, overwrite: bool) -> set[int]:
    """The parts folder, checked against the plan (and with --overwrite cleared of this rank's parts); the numbers
    of the parts already in it."""
    if out.exists() and not parts.exists() and not overwrite:
        raise GraftcvError(f"{out} already exists: pass --overwrite to replace it, or choose another --out.")
    parts.mkdir(parents=True, exist_ok=True)
    if overwrite:  # each rank clears only its own parts, so that no rank deletes what another just wrote
        for file in parts.iterdir():
            index = part_index(file)
            if (file.name == PLAN_FILE and rank == 0) or (index is not None and index % world == rank):
                file.unlink(missing_ok=True)
    if rank == 0 or not overwrite:  # rank 0 writes the plan; another rank could read the one it replaces
        check_plan(parts, plan, out, write=rank == 0)
    return {index for file in parts.iterdir() if (index := part_index(file)) is not None}


def _settings(model_dir: str | Path, runtime: str, parts: Path, k: int, batch_size: int, workers: int) -> Settings:
    """What each predicting process gets; the cores are shared by this machine's ranks and their processes."""
    local_rank = os.environ.get("LOCAL_RANK", "")
    local_world = os.environ.get("LOCAL_WORLD_SIZE", "")
    per_machine = (int(local_world) if local_world.isdigit() else 1) * workers
    threads = max(1, cores() // per_machine) if per_machine > 1 else None
    rank_here = int(local_rank) if local_rank.isdigit() else None
    return Settings(str(model_dir), runtime, str(parts), k, batch_size, threads, workers, rank_here)


def predict_to_parquet(
    model_dir: str | Path,
    source: str | Path | list,
    out: str | Path,
    topk: int = 5,
    part_size: int = 10_000,
    workers: int = 1,
    batch_size: int = 32,
    runtime: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Predict every image of `source` (image files, folders, .txt lists of paths, CSVs with a `path` column) into
    the Parquet file `out`: path, class, probability, top_classes, top_probabilities (k each) and error (the
    reason an image could not be read; null when fine), one row per image in source order.

    Parts of `part_size` images go to `OUT.parts/part-NNNNNN.parquet` first: a rerun after a kill skips the
    parts that exist. `workers` processes share this machine; under torchrun or SLURM (WORLD_SIZE/RANK or
    SLURM_NTASKS/SLURM_PROCID) each rank predicts every world-th part and rank 0 merges them, so `out` must be on
    a file system every rank sees. Returns images, parts_done, parts_skipped, seconds, images_per_second, out."""
    started = time.perf_counter()
    if min(topk, part_size, workers, batch_size) < 1:
        raise GraftcvError("topk, part_size, workers and batch_size must each be at least 1.")
    out, items = Path(out).expanduser(), list(source) if isinstance(source, list | tuple) else [source]
    paths = open_source(items)
    rank, world = rank_and_world()
    directory, meta = read_meta(model_dir)
    k = min(topk, len(meta["classes"]))
    fingerprint = hashlib.sha256((directory / META_FILE).read_bytes()).hexdigest()
    plan = {"format": 1, "source": paths.identity(), "model": str(directory.resolve()), "model_sha256": fingerprint,
            "part_size": paths.plan_part_size(part_size), "topk": k}  # fmt: skip
    parts = parts_dir(out)
    done_before = _ready_parts(out, parts, plan, rank, world, overwrite)
    settings = _settings(model_dir, choose_runtime(model_dir, runtime), parts, k, batch_size, workers)
    skipped, count, runner = 0, 0, None
    with image_progress(progress) as bar:
        bar.columns = (*bar.columns, TimeRemainingColumn())
        task = bar.add_task("predict", total=None)
        if not bar.disable:
            args = (paths, part_size, rank, world, done_before, bar, task)
            threading.Thread(target=_count_for_bar, args=args, daemon=True).start()
        advance = partial(bar.advance, task)
        try:
            for part in paths.parts(part_size):
                count = part.index + 1
                if part.index % world != rank:
                    continue
                if part_done(parts, part):
                    skipped += 1
                    continue
                if runner is None:  # the model is loaded once a part needs it: a finished rerun loads none
                    runner = Processes(settings, workers, advance) if workers > 1 else Inline(settings, advance)
                runner.submit(part)
            images, errors, done = runner.finish() if runner is not None else (0, 0, 0)
        except BaseException:
            if runner is not None:
                runner.stop()
            raise
    if count == 0:
        shutil.rmtree(parts, ignore_errors=True)
        raise GraftcvError(f"No images found in {', '.join(str(i) for i in items)}.")
    rows = None
    if rank == 0:
        wait_for_parts(parts, count, RANK_TIMEOUT)
        metadata = {"model": plan["model"], "model_sha256": fingerprint, "topk": k, "classes": meta["classes"]}
        rows = merge(parts, count, out, metadata)
    seconds = time.perf_counter() - started
    return {
        "images": images,
        "errors": errors,
        "rows": rows,
        "parts": count,
        "parts_done": done,
        "parts_skipped": skipped,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 2) if seconds > 0 else 0.0,
        "out": str(out) if rank == 0 else None,
        "rank": rank,
        "world": world,
    }
