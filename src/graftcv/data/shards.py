"""Sharded data: the shard format, its manifest, and torch-free readers that stream the samples back.

WebDataset rather than LitData: its shards are plain POSIX tar files that any tar tool reads, streamed sequentially
from a path or an http(s)/pipe URL, with a shuffle buffer and node/worker splitting; LitData needs its own optimized
binary format and a converter step. Layout (`shard_writer` writes it, `shard_stream` trains on it): SPLIT-000000.tar,
SPLIT-index.csv (key,name,label) and manifest.json, written last. Paths, file: and http(s) URLs are read with the
standard library, without torch or webdataset (whose import pulls torch), so that torch-free paths (the CLI,
`graftcv.lite`) can ask `is_shard_source` and read samples; other URLs (pipe:, s3://) go to webdataset's `gopen`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname, urlopen

from graftcv.errors import GraftcvError

if TYPE_CHECKING:
    from PIL import Image

FORMAT = "graftcv-shards/1"
MANIFEST = "manifest.json"
SPLIT_NAMES = ("train", "val", "test")
META_KEYS = ("cls", "json")
URL = re.compile(r"^(https?|file):", re.IGNORECASE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]+:", re.IGNORECASE)  # two letters at least: C:/ is a Windows drive


@dataclass(frozen=True)
class ShardSplit:
    """One split of a shard set: its shard URLs (or paths) in order, their sample counts, and its index CSV."""

    name: str
    urls: list[str]
    counts: list[int]
    class_counts: dict[str, int]
    index_url: str
    sizes: list[int] = field(default_factory=list)  # bytes of each shard, as the manifest records them

    def __len__(self) -> int:
        return sum(self.counts)

    @property
    def mean_sample_bytes(self) -> int:
        """Mean encoded size of a sample (image, label, name and tar headers): what a shuffle buffer holds."""
        return max(1, sum(self.sizes) // max(1, len(self)))


@dataclass(frozen=True)
class ShardManifest:
    """A shard set: where it lies (`root`, a folder or a URL), its classes, splits and the data it came from."""

    root: str
    classes: list[str]
    splits: dict[str, ShardSplit]
    source: str
    created: str = ""


@dataclass(frozen=True)
class Sample:
    """One stored image: its key in the split, original name, class name and index, encoded bytes and extension."""

    key: str
    name: str
    label: str
    target: int
    image: bytes
    ext: str


# --- locations -------------------------------------------------------------------------------------------------


def _text(source: str | Path) -> str:
    """The source as a string; a URL that went through `Path` (https:/host/...) gets its second slash back."""
    return re.sub(r"^(https?):/(?!/)", r"\1://", str(source), flags=re.IGNORECASE)


def _local(url: str) -> Path | None:
    """The local path a plain path or file: URL names; None for a remote URL."""
    if url.lower().startswith("file:"):
        return Path(url2pathname(urlparse(url).path))
    return None if SCHEME.match(url) else Path(url).expanduser()


def is_shard_source(source: str | Path) -> bool:
    """True for a folder holding manifest.json, and for a path or http(s)/file URL ending in manifest.json."""
    text = _text(source)
    path = _local(text)
    if path is None:
        return URL.match(text) is not None and urlparse(text).path.endswith(f"/{MANIFEST}")
    return path.name == MANIFEST or (path.is_dir() and (path / MANIFEST).is_file())


def manifest_location(source: str | Path) -> str:
    """Where the manifest of `source` is: SOURCE/manifest.json for a local folder, else the path or URL itself."""
    text = _text(source)
    path = _local(text)
    if path is None or URL.match(text):  # a URL stays one, so that shard names resolve against it
        return urljoin(text.rstrip("/") + "/", MANIFEST) if path is not None and path.is_dir() else text
    return str(path / MANIFEST) if path.is_dir() else str(path)


def open_url(url: str) -> IO[bytes]:
    """A binary stream of a local path, a file: or http(s) URL (standard library), or any other URL webdataset's
    `gopen` opens (pipe:, s3:// and the like, through its command-line tools; this one imports torch)."""
    path = _local(url)
    if path is not None:
        return path.open("rb")
    if url.lower().startswith(("http://", "https://")):
        return urlopen(url, timeout=60)
    from webdataset import gopen

    return gopen(url, "rb")


def _join(location: str, name: str) -> str:
    if URL.match(location):
        return urljoin(location, name)
    return str(Path(location).parent / name)


# --- reading ---------------------------------------------------------------------------------------------------


def read_manifest(source: str | Path) -> ShardManifest:
    """The manifest of a shard folder, or of a manifest path or URL; shard and index locations resolved against it."""
    location = manifest_location(source)
    try:
        with open_url(location) as handle:
            raw = handle.read()
    except OSError as error:
        if isinstance(error, FileNotFoundError) or getattr(error, "code", None) == 404:
            raise GraftcvError(
                f"No shard manifest at {location}: write shards with `graftcv shard DATA --out DIR`."
            ) from None
        raise GraftcvError(f"Cannot read the shard manifest {location}: {getattr(error, 'reason', error)}.") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GraftcvError(f"{location} is not a JSON shard manifest: it may be truncated; write it again.") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != FORMAT:
        raise GraftcvError(f"{location} is not a graftcv shard manifest (format {found!r}, expected {FORMAT!r}).")
    try:
        splits = {str(name): _read_split(str(name), entry, location) for name, entry in data["splits"].items()}
        manifest = ShardManifest(
            root=urljoin(location, ".") if URL.match(location) else str(Path(location).parent),
            classes=[str(name) for name in data["classes"]],
            splits=splits,
            source=str(data.get("source", "")),
            created=str(data.get("created", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise GraftcvError(f"{location} is a garbled shard manifest (bad or missing {error}).") from None
    if "train" not in splits or "val" not in splits:
        raise GraftcvError(f"{location} is a garbled shard manifest: it needs a train and a val split.")
    return manifest


def _read_split(name: str, entry: dict, location: str) -> ShardSplit:
    shards = entry["shards"]
    counts = [int(shard["count"]) for shard in shards]
    if sum(counts) != int(entry["count"]):
        raise ValueError(f"{name} count: {entry['count']} against {sum(counts)} in its shards")
    return ShardSplit(
        name=name,
        urls=[_join(location, str(shard["file"])) for shard in shards],
        counts=counts,
        class_counts={str(label): int(n) for label, n in entry["class_counts"].items()},
        index_url=_join(location, str(entry["index"])),
        sizes=[int(shard.get("bytes", 0)) for shard in shards],
    )


def read_index(split: ShardSplit) -> list[tuple[str, str, str]]:
    """(key, name, label) of every sample of the split, in order, read row by row from its index CSV."""
    try:
        with open_url(split.index_url) as handle:
            rows = csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
            if next(rows, None) != ["key", "name", "label"]:
                raise GraftcvError(f"{split.index_url} is not a shard index (key,name,label).")
            return [(key, name, label) for key, name, label in rows]
    except OSError as error:
        raise GraftcvError(f"Cannot read the shard index {split.index_url}: {error}.") from None


def iter_samples(split_or_urls: ShardSplit | Sequence[str] | str | Path) -> Iterator[Sample]:
    """Every sample of the shards, in order, one shard open at a time: memory stays flat however large the split.

    Read with the standard library's streaming tar reader (what webdataset's `tarfile_samples` does, without
    importing torch), grouping a sample's files by their key as webdataset does."""
    single = isinstance(split_or_urls, str | Path)
    urls = [str(split_or_urls)] if single else getattr(split_or_urls, "urls", split_or_urls)
    for url in urls:
        try:
            with open_url(url) as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
                key, parts = None, {}
                for member in tar:
                    if not member.isreg():
                        continue
                    folder, _, base = member.name.rpartition("/")
                    stem, _, ext = base.partition(".")
                    name = f"{folder}/{stem}" if folder else stem
                    if name != key and parts:
                        yield _sample(key, parts, url)
                        parts = {}
                    key, parts[ext.lower()] = name, tar.extractfile(member).read()
                    tar.members = []  # a stream reader keeps every member it has seen otherwise
                if parts:
                    yield _sample(key, parts, url)
        except (OSError, tarfile.TarError) as error:
            raise GraftcvError(f"Cannot read the shard {url}: {error}.") from None


def _sample(key: str | None, parts: dict[str, bytes], url: str) -> Sample:
    images = [ext for ext in parts if ext not in META_KEYS]
    if len(images) != 1 or any(k not in parts for k in META_KEYS):
        raise GraftcvError(f"{url}: sample {key} is not a graftcv sample (it holds {', '.join(sorted(parts))}).")
    try:
        meta = json.loads(parts["json"])
        return Sample(str(key), str(meta["name"]), str(meta["label"]), int(parts["cls"]), parts[images[0]], images[0])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise GraftcvError(f"{url}: sample {key} has a garbled label (cls and json).") from None


def decode(sample: Sample, draft_size: int | None = None) -> Image.Image:
    """The sample's image as upright RGB (a PIL image), decoded exactly as `load_rgb` decodes the original file."""
    from graftcv.data.images import load_rgb

    return load_rgb(io.BytesIO(sample.image), draft_size)


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def shuffle_buffer_for(
    memory_bytes: int | None = None, *, mean_sample_bytes: int, split_size: int | None = None, buffers: int = 1
) -> int:
    """Samples a training shuffle buffer holds by default, for `buffers` of them (one per DataLoader worker).

    At most 5% of the machine's memory (`memory_bytes`, default the physical RAM) over the cost of one buffered
    sample (`ShardImageStream` buffers encoded samples: `ShardSplit.mean_sample_bytes`); capped at 10,000, where
    a buffer already mixes classes across shards of any size and fills in seconds, and at the split's size;
    at least 100 (a few MB), below which consecutive samples stay correlated with the order they were written in."""
    memory = memory_bytes or physical_memory() or 8 * 2**30
    fitting = int(memory * 0.05) // max(1, buffers) // max(1, mean_sample_bytes)
    size = max(100, min(10_000, fitting))
    return max(1, min(size, split_size)) if split_size is not None else size
