"""Shared fixtures: tiny synthetic image folders, an isolated feature cache, the real-data location."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
realdata = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not found at {SHARED}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.realdata` alone is enough: such tests skip when ../shared/datasets is absent."""
    if SHARED.is_dir():
        return
    for item in items:
        if item.get_closest_marker("realdata"):
            item.add_marker(realdata)


# Distinct, saturated colours so that even a random-init network separates the classes a little.
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 210, 30), (200, 40, 200)]

# Small settings every fit-based test shares: a random-init tiny network, one epoch, no workers.
TINY = dict(
    model="resnet10t",
    pretrained=False,
    size=32,
    epochs=1,
    head_epochs=1,
    batch_size=8,
    num_workers=0,
    progress=False,
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test gets its own feature cache, so nothing touches ~/.cache and no test sees another's.
    Its own MonkeyPatch: a test calling `monkeypatch.undo()` cannot put the cache back in ~/.cache."""
    cache = tmp_path_factory.mktemp("graftcv-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """Two cores: keep torch from oversubscribing them (GRAFTCV_TEST_THREADS=1 beside a benchmark)."""
    import torch

    torch.set_num_threads(int(os.environ.get("GRAFTCV_TEST_THREADS", min(2, os.cpu_count() or 1))))


def write_image(path: Path, colour: tuple[int, int, int], seed: int, size: int = 48, fmt: str | None = None) -> Path:
    """A `size`-pixel square of `colour` plus noise."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-25, 26, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path, format=fmt)
    return path


def write_class_folders(root: Path, classes: int = 3, per_class: int = 7, seed: int = 0, size: int = 48) -> Path:
    """ROOT/CLASS/*.jpg with `per_class` images of a distinct colour per class."""
    for c in range(classes):
        for i in range(per_class):
            write_image(root / f"class_{c}" / f"img_{i:02d}.jpg", COLOURS[c], seed * 1000 + c * 100 + i, size)
    return root


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """make_folder(name="data", classes=3, per_class=7) → tmp_path/name with CLASS/*.jpg inside."""

    def make(name: str = "data", classes: int = 3, per_class: int = 7, seed: int = 0, size: int = 48) -> Path:
        return write_class_folders(tmp_path / name, classes, per_class, seed, size)

    return make


@pytest.fixture
def make_split_folder(tmp_path: Path) -> Callable[..., Path]:
    """make_split_folder(train="train", val="val", test=None) → ROOT/{train,val[,test]}/CLASS/*.jpg."""

    def make(
        name: str = "split",
        train: str = "train",
        val: str | None = "val",
        test: str | None = None,
        classes: int = 3,
        n_train: int = 6,
        n_val: int = 3,
    ) -> Path:
        root = tmp_path / name
        write_class_folders(root / train, classes, n_train, seed=1)
        if val:
            write_class_folders(root / val, classes, n_val, seed=2)
        if test:
            write_class_folders(root / test, classes, n_val, seed=3)
        return root

    return make


@pytest.fixture
def tiny() -> dict:
    """A fresh copy of the tiny-fit settings."""
    return dict(TINY)


@pytest.fixture
def restore_logging():
    """main() configures logging for the terminal; put the test process back as it was."""
    root, package = logging.getLogger(), logging.getLogger("graftcv")
    handlers, level, package_level = root.handlers[:], root.level, package.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    package.setLevel(package_level)
