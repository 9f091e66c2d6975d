"""What a bulk prediction reads, cut into numbered parts: image files, folders, .txt lists and CSVs as one stream of
paths (`PathSource`), or a shard set of `graftcv.data.shards` whose every shard is one part (`ShardSource`)."""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from graftcv.data.discovery import IMAGE_SUFFIXES
from graftcv.errors import GraftcvError


@dataclass
class Part:
    """Numbered slice of the source: image paths, or (a shard source) one shard read by whoever predicts it."""

    index: int
    paths: list[str] = field(default_factory=list)
    shard: str | None = None
    count: int = 0

    def digest(self) -> str:
        text = f"{self.shard}\n{self.count}" if self.shard is not None else "\n".join(self.paths)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def walk(folder: str) -> Iterator[str]:
    """Image files under `folder` in list_images' sorted order (by name at each level, depth first); hidden files
    and folders and files without an image suffix are left out. One directory's entries are held at a time."""
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from walk(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            yield entry.path


def _relative_to(base: Path, entry: str) -> str:
    path = Path(entry).expanduser()
    return str(path if path.is_absolute() else base / path)


def _path_column(csv_path: Path) -> int:
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        header = [cell.strip().lower() for cell in next(csv.reader(handle), [])]
    if "path" not in header:
        raise GraftcvError(f"{csv_path} has no 'path' column in its header: a CSV to predict needs one.")
    return header.index("path")


def _csv_paths(csv_path: Path) -> Iterator[str]:
    column = _path_column(csv_path)
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        for row in rows:
            if len(row) > column and row[column].strip():
                yield _relative_to(csv_path.parent, row[column].strip())


def _txt_paths(txt_path: Path) -> Iterator[str]:
    with txt_path.open(encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                yield _relative_to(txt_path.parent, line.strip())


def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    return {".txt": "list", ".csv": "csv"}.get(path.suffix.lower(), "image")


class PathSource:
    """Image files and folders, .txt lists (one path a line) and CSVs with a `path` column, relative paths being
    relative to the list; read as a stream. A listed path that is missing or unreadable gets an error row."""

    def __init__(self, items: list[Path]) -> None:
        self.items = items
        for item in items:
            if not item.exists():
                raise GraftcvError(f"Image path {item} does not exist.")
            if _kind(item) == "csv":
                _path_column(item)

    def identity(self) -> list[dict]:
        """What a rerun must find again: each item's kind, absolute path and, for lists, size."""
        return [
            {
                "kind": _kind(item),
                "path": str(item.resolve()),
                **({"bytes": item.stat().st_size} if item.is_file() else {}),
            }
            for item in self.items
        ]

    def paths(self) -> Iterator[str]:
        for item in self.items:
            kind = _kind(item)
            if kind == "folder":
                yield from walk(str(item))
            elif kind == "list":
                yield from _txt_paths(item)
            elif kind == "csv":
                yield from _csv_paths(item)
            else:
                yield str(item)

    def parts(self, size: int) -> Iterator[Part]:
        stream = self.paths()
        for index in itertools.count():
            chunk = list(itertools.islice(stream, size))
            if not chunk:
                return
            yield Part(index, chunk, count=len(chunk))

    def sizes(self, size: int) -> list[int]:
        """The image count of every part (the source listed once more)."""
        total = sum(1 for _ in self.paths())
        return [min(size, total - start) for start in range(0, total, size)]

    def plan_part_size(self, size: int) -> int | None:
        return size


class ShardSource:
    """A shard set (a folder with manifest.json, or its URL): every split's shards in manifest order, each shard one
    part whatever the part size, its samples read by the process that predicts it."""

    def __init__(self, location: str | Path) -> None:
        from graftcv.data.shards import manifest_location, read_manifest

        self.location = manifest_location(location)
        manifest = read_manifest(location)
        splits = manifest.splits.values()
        self.shards = [pair for split in splits for pair in zip(split.urls, split.counts, strict=True)]

    def identity(self) -> list[dict]:
        listing = "\n".join(f"{url} {n}" for url, n in self.shards).encode("utf-8", "surrogateescape")
        return [{"kind": "shards", "path": self.location, "shards": len(self.shards),
                 "sha256": hashlib.sha256(listing).hexdigest()}]  # fmt: skip

    def parts(self, size: int) -> Iterator[Part]:
        for index, (url, n) in enumerate(self.shards):
            yield Part(index, shard=url, count=n)

    def sizes(self, size: int) -> list[int]:
        return [n for _, n in self.shards]

    def plan_part_size(self, size: int) -> int | None:
        return None  # a shard is a part: --part-size changes nothing


def open_source(items: list[str | Path]) -> PathSource | ShardSource:
    """The source of `predict_to_parquet`: a shard set alone, or any mix of files, folders and lists."""
    from graftcv.data.shards import is_shard_source

    if any(is_shard_source(item) for item in items):
        if len(items) > 1:
            raise GraftcvError("A shard set is predicted on its own: give its folder (or manifest) as the only source.")
        return ShardSource(items[0])
    return PathSource([Path(item).expanduser() for item in items])
