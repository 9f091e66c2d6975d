"""Atomic file writes: the new content goes to a hidden sibling, is flushed to disk, then renamed into place."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file or a directory entry to disk (directories cannot be opened on Windows: skipped there)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """`with replacing(path) as staging:` write `staging` any way you like; on success it replaces `path` in
    one rename, so a reader (or a process killed mid-write) only ever sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    try:
        yield staging
        fsync_path(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as staging:
        staging.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_csv(path: str | Path, columns: list[str], rows: list[dict]) -> Path:
    """Rows (dicts; keys outside `columns` left out) as a CSV with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_json(path: str | Path, data: object) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str))


def read_json(path: Path) -> dict | None:
    """A JSON file's object, or None when it is missing or broken (readers of old or partial runs)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def os_errors(path: str | Path) -> Iterator[None]:
    """Writers that report a failed write in their own exception type (safetensors: `SafetensorError: ... I/O
    error: No space left on device (os error 28)`) raise the OSError it was, for `path`, so that a full disk
    reads the same whoever met it."""
    try:
        yield
    except OSError:
        raise
    except Exception as error:
        found = re.search(r"os error (\d+)", str(error))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from error
