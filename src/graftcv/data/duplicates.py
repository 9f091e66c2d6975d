"""The same image twice: repeated paths dropped, byte-identical files kept on one side of every split."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graftcv.data.sets import ImageSet


def drop_repeated_paths(images: ImageSet) -> tuple[ImageSet, int]:
    """The first row of every path (a CSV may name one twice, under one label or two); and how many went."""
    seen: set[Path] = set()
    kept = []
    for index, path in enumerate(images.paths):
        key = Path(path).resolve()
        if key not in seen:
            seen.add(key)
            kept.append(index)
    return images.subset(kept), len(images) - len(kept)


def content_digests(paths: list[Path]) -> list[str]:
    """A digest of every file's bytes (threads: hashing releases the GIL)."""

    def digest(path: Path) -> str:
        with Path(path).open("rb") as handle:
            return hashlib.file_digest(handle, "blake2b").hexdigest()

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(digest, paths))


def copies_of(digests: list[str]) -> int:
    """How many files repeat an earlier one's bytes."""
    return len(digests) - len(set(digests))


def drop_seen(images: ImageSet, digests: list[str], seen: set[str]) -> tuple[ImageSet, int]:
    """`images` less those whose bytes are already in `seen` (an earlier split); and how many went."""
    kept = [i for i, d in enumerate(digests) if d not in seen]
    return images.subset(kept), len(images) - len(kept)
