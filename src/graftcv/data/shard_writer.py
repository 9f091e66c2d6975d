"""`graftcv shard`: the splits training would draw, written as WebDataset tar shards, index CSVs and a manifest."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graftcv.atomic import fsync_path, write_json
from graftcv.data.sets import ImageSet
from graftcv.data.shards import FORMAT, MANIFEST
from graftcv.errors import GraftcvError

MAX_COUNT = 100_000  # samples per shard, webdataset's own default; --shard-size is the usual limit
EXT_ALIASES = {"jpeg": "jpg"}
UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes of a size such as 1GB, 500MB, 64KiB or 1e9 (decimal and binary units, the B optional)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?)?b?\s*", str(text), re.IGNORECASE)
    size = int(float(found.group(1)) * UNITS[(found.group(2) or "").lower()]) if found else 0
    if size < 1:
        raise GraftcvError(f"--shard-size must be a size such as 1GB, 500MB or 64KiB, not {str(text)!r}.")
    return size


def image_ext(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return EXT_ALIASES.get(ext, ext)


def _name(path: Path, root: Path) -> str:
    """The path relative to the data root when it lies inside it, else absolute (no symlinks followed)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return absolute.as_posix()


def write_shards(
    data: str | Path,
    out: str | Path,
    *,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
    shard_size: str | int = "1GB",
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write the splits training would draw from `data` as tar shards, index CSVs and a manifest into `out`.

    The splits are `discover(data, val, test, val_fraction, seed)` with TrainConfig's defaults, so training on the
    shards and on `data` sees the same images. The folder is built beside `out` and renamed into place when complete.
    Returns a summary: counts per split, shards, bytes and seconds."""
    from graftcv.config import TrainConfig
    from graftcv.data.discovery import discover, warn_skipped

    started, max_size, out = time.perf_counter(), parse_size(shard_size), Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise GraftcvError(f"{out} already holds files: give --overwrite to replace them, or choose another --out.")
    source = Path(os.path.abspath(Path(data).expanduser()))
    if source.is_dir() and Path(os.path.abspath(out)).is_relative_to(source):
        raise GraftcvError(f"--out {out} lies inside the data {data}: choose a folder outside it.")
    val_fraction = TrainConfig.val_fraction if val_fraction is None else val_fraction
    seed = TrainConfig.seed if seed is None else seed
    splits = discover(data, val, test, val_fraction, seed)
    warn_skipped(splits.skipped)
    sets = {"train": splits.train, "val": splits.val, "test": splits.test}
    sets = {name: images for name, images in sets.items() if images is not None and len(images)}
    root = source.parent if source.is_file() else source
    staged = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        entries = {}
        with _shard_progress(progress) as bar:
            task = bar.add_task("shard", total=sum(len(images) for images in sets.values()))

            def advance() -> None:
                bar.advance(task)

            for name, images in sets.items():
                entries[name] = _write_split(staged, name, images, splits.classes, root, max_size, advance)
        manifest = {
            "format": FORMAT,
            "classes": splits.classes,
            "source": str(source),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "splits": entries,
        }
        write_json(staged / MANIFEST, manifest)
        fsync_path(staged)
        _swap_in(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    shards = [shard for entry in entries.values() for shard in entry["shards"]]
    return {
        "out": str(out),
        "counts": {name: entry["count"] for name, entry in entries.items()},
        "shards": len(shards),
        "bytes": sum(shard["bytes"] for shard in shards),
        "seconds": time.perf_counter() - started,
        "skipped": len(splits.skipped),
    }


def _shard_progress(enabled: bool) -> Any:
    from rich.progress import TimeRemainingColumn

    from graftcv.progress import image_progress

    bar = image_progress(enabled)
    bar.columns = (*bar.columns, TimeRemainingColumn())
    return bar


def _write_split(
    folder: Path, split: str, images: ImageSet, classes: list[str], root: Path, max_size: int, advance: Callable
) -> dict:
    """SPLIT-%06d.tar through webdataset's ShardWriter and SPLIT-index.csv; the split's manifest entry."""
    from webdataset import ShardWriter

    index_of = {name: i for i, name in enumerate(classes)}
    counts: dict[str, int] = {}
    index = folder / f"{split}-index.csv"
    pattern = str(folder / f"{split}-%06d.tar")
    with (
        index.open("w", newline="", encoding="utf-8") as handle,
        ShardWriter(pattern, maxsize=max_size, maxcount=MAX_COUNT, verbose=0, encoder=False) as writer,
    ):
        rows = csv.writer(handle, lineterminator="\n")
        rows.writerow(["key", "name", "label"])
        for position, (path, label) in enumerate(zip(images.paths, images.labels, strict=True)):
            key, name = f"{position:09d}", _name(path, root)
            meta = json.dumps({"name": name, "label": label}, ensure_ascii=False).encode("utf-8")
            try:
                image = path.read_bytes()
            except OSError as error:  # checked a moment ago by discovery: it went or changed since
                raise GraftcvError(f"{path} could not be read ({error.strerror or error}): run again.") from None
            sample = {"__key__": key, image_ext(path): image, "cls": str(index_of[label]).encode()}
            writer.write(sample | {"json": meta})
            counts[writer.fname] = counts.get(writer.fname, 0) + 1
            rows.writerow([key, name, label])
            advance()
    for file in counts:
        fsync_path(Path(file))
    shards = [{"file": Path(f).name, "count": n, "bytes": Path(f).stat().st_size} for f, n in sorted(counts.items())]
    return {"shards": shards, "count": sum(counts.values()), "class_counts": images.counts(), "index": index.name}


def _swap_in(staged: Path, final: Path) -> None:
    """Replace `final` by the complete folder `staged`: two renames, the old folder removed last."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
