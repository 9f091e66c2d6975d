"""Sharded data: `graftcv shard` writes tar shards and a manifest; the readers and ShardImageStream stream them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import COLOURS, TINY, write_class_folders, write_image

import graftcv
from graftcv.cli import main
from graftcv.data import discover
from graftcv.data.shard_stream import ShardImageStream, deal
from graftcv.data.shard_writer import parse_size, write_shards
from graftcv.data.shards import (
    MANIFEST,
    is_shard_source,
    iter_samples,
    read_index,
    read_manifest,
    shuffle_buffer_for,
)
from graftcv.errors import GraftcvError
from graftcv.rundir import evaluation_dir


def shard_cli(*args: object) -> int:
    """`graftcv shard ...` in this process: its exit code."""
    argv = sys.argv
    sys.argv = ["graftcv", "shard", *map(str, args)]
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        sys.argv = argv
    return 0


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """ROOT/{train,val,test}/CLASS/* with a PNG and a .jpeg among the JPEGs."""
    root = tmp_path_factory.mktemp("shards") / "data"
    write_class_folders(root / "train", classes=3, per_class=8, seed=1)
    write_class_folders(root / "val", classes=3, per_class=3, seed=2)
    write_class_folders(root / "test", classes=3, per_class=3, seed=3)
    write_image(root / "train" / "class_0" / "extra.png", COLOURS[0], 77, fmt="PNG")
    write_image(root / "train" / "class_1" / "upper.JPEG", COLOURS[1], 78, fmt="JPEG")
    return root


@pytest.fixture(scope="module")
def shards(data) -> Path:
    out = data.parent / "shards"
    assert shard_cli(data, "--out", out, "--shard-size", "6KiB") == 0
    return out


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    yield


def all_keys(split) -> list[str]:
    return [sample.key for sample in iter_samples(split)]


def test_shard_writes_the_layout_and_a_manifest_that_counts(data, shards):
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["format"] == "graftcv-shards/1" and manifest["classes"] == ["class_0", "class_1", "class_2"]
    assert manifest["source"] == str(data.resolve())
    splits = discover(data)
    for name, images in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        entry = manifest["splits"][name]
        assert entry["count"] == len(images) == sum(s["count"] for s in entry["shards"])
        assert entry["class_counts"] == images.counts()
        for shard in entry["shards"]:
            assert (shards / shard["file"]).stat().st_size == shard["bytes"]
        index = read_index(read_manifest(shards).splits[name])
        assert [name for _, name, _ in index] == [p.relative_to(data).as_posix() for p in images.paths]
        assert [key for key, _, _ in index] == [f"{i:09d}" for i in range(len(images))]
    assert len(manifest["splits"]["train"]["shards"]) >= 3  # 6KiB forces several
    expected = {f"{s}-index.csv" for s in ("train", "val", "test")} | {MANIFEST}
    expected |= {shard["file"] for entry in manifest["splits"].values() for shard in entry["shards"]}
    assert {p.name for p in shards.iterdir()} == expected  # and no staging folder left beside it
    assert [p.name for p in shards.parent.iterdir() if p.name.startswith(".")] == []


def test_every_image_round_trips_byte_for_byte(data, shards):
    manifest = read_manifest(shards)
    seen = set()
    for split in manifest.splits.values():
        for position, sample in enumerate(iter_samples(split)):
            original = data / sample.name
            assert sample.key == f"{position:09d}"
            assert sample.image == original.read_bytes()
            assert sample.label == original.parent.name and manifest.classes[sample.target] == sample.label
            seen.add((sample.name, sample.ext))
    assert ("train/class_0/extra.png", "png") in seen and ("train/class_1/upper.JPEG", "jpg") in seen


def test_a_second_run_needs_overwrite_and_leaves_the_first_intact(data, shards, capsys):
    before = {p.name: p.read_bytes() for p in shards.iterdir()}
    capsys.readouterr()
    assert shard_cli(data, "--out", shards) == 2
    error = capsys.readouterr().err
    assert "already holds files" in error and "--overwrite" in error and error.count(".") <= 3
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == before


def test_overwrite_replaces_the_shards(data, tmp_path):
    out = tmp_path / "again"
    write_shards(data, out, shard_size="16KiB")
    done = write_shards(data, out, shard_size="1GB", overwrite=True)
    assert done["shards"] == 3  # one per split now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_a_csv_and_a_separate_validation_folder(tmp_path):
    images = write_class_folders(tmp_path / "pool" / "images", classes=2, per_class=4)
    rows = [f"images/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(images.rglob("*.jpg"))]
    (tmp_path / "pool" / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    held_out = write_class_folders(tmp_path / "held_out", classes=2, per_class=2, seed=5)
    write_shards(tmp_path / "pool" / "labels.csv", tmp_path / "out", val=held_out)
    manifest = read_manifest(tmp_path / "out")
    assert [name for _, name, _ in read_index(manifest.splits["train"])][:2] == [
        "images/class_0/img_00.jpg",
        "images/class_0/img_01.jpg",
    ]
    assert all(Path(name).is_absolute() for _, name, _ in read_index(manifest.splits["val"]))  # outside the data
    assert set(manifest.splits) == {"train", "val"} and len(manifest.splits["val"]) == 4
    with pytest.raises(GraftcvError, match="inside the data"):
        write_shards(images.parent, images.parent / "shards")


@pytest.mark.parametrize("size", ["1XB", "0", "-5MB", "lots"])
def test_a_bad_size_is_one_sentence_and_exit_2(data, tmp_path, capsys, size):
    assert shard_cli(data, "--out", tmp_path / "out", "--shard-size", size) == 2
    assert "--shard-size must be a size such as 1GB" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sizes_parse_in_decimal_and_binary_units():
    assert parse_size("1GB") == 10**9 and parse_size("500MB") == 500 * 10**6 and parse_size("64KiB") == 65536
    assert parse_size("2 gib") == 2 * 2**30 and parse_size("1.5M") == 1_500_000 and parse_size(4096) == 4096


def stream(split, classes, **options) -> ShardImageStream:
    return ShardImageStream(split, classes, transform=lambda image: torch.zeros(1), **options)


@pytest.mark.parametrize("workers", [1, 2])
def test_two_ranks_cover_every_sample_once(shards, workers):
    manifest = read_manifest(shards)
    for split in manifest.splits.values():  # train: several shards (dealt out); val and test: one (every k-th)
        parts = [
            [s.key for s in stream(split, manifest.classes, rank=rank, world=2).samples(worker, workers)]
            for rank in (0, 1)
            for worker in range(workers)
        ]
        keys = [key for part in parts for key in part]
        assert sorted(keys) == all_keys(split) and len(set(keys)) == len(keys)
        assert all(parts)


def test_shards_are_dealt_out_only_when_the_parts_stay_balanced():
    four = [(f"s{i}", 100) for i in range(4)]
    assert deal(four, 1, 2) == ([("s1", 100), ("s3", 100)], None)
    assert deal(four, 1, 8) == (four, (1, 8))  # fewer shards than parts: every 8th sample
    lopsided = [("big", 1000), ("small", 10)]
    assert deal(lopsided, 0, 2) == (lopsided, (0, 2))
    assert deal(lopsided, 0, 1) == (lopsided, None)


def test_epoch_length_gives_every_rank_the_same_count(shards):
    manifest = read_manifest(shards)
    split = manifest.splits["train"]
    for length in (5, len(split), 3 * len(split)):
        for rank in (0, 1):
            ranked = stream(split, manifest.classes, rank=rank, world=2, epoch_length=length, shuffle_buffer=8)
            assert len(ranked) == length
            assert sum(1 for _ in ranked.samples(0, 2)) + sum(1 for _ in ranked.samples(1, 2)) == length
    plain = stream(split, manifest.classes, rank=1, world=2)
    assert len(plain) == -(-len(split) // 2)


def test_a_loader_with_workers_yields_what_its_length_says(shards):
    manifest = read_manifest(shards)
    split = manifest.splits["train"]
    data = stream(split, manifest.classes, rank=0, world=2, epoch_length=13, batch_size=4, shuffle_buffer=8)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(2):
        data.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == 4 and sum(len(t) for _, t in batches) == 13
        orders.append(torch.cat([t for _, t in batches]).tolist())
    data.set_epoch(0)
    assert torch.cat([t for _, t in loader]).tolist() == orders[0]  # persistent workers see set_epoch


def test_the_shuffle_is_deterministic_per_seed_and_epoch(shards):
    manifest = read_manifest(shards)
    split = manifest.splits["train"]

    def order(seed: int, epoch: int) -> list[str]:
        shuffled = stream(split, manifest.classes, shuffle_buffer=10, seed=seed)
        shuffled.set_epoch(epoch)
        return [s.key for s in shuffled.samples()]

    assert order(0, 0) == order(0, 0) and order(0, 1) == order(0, 1)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 1)) == all_keys(split)
    assert [s.key for s in stream(split, manifest.classes).samples()] == all_keys(split)  # no buffer: in order


def test_streaming_from_a_file_url(shards):
    url = shards.resolve().as_uri() + "/" + MANIFEST
    assert is_shard_source(url) and is_shard_source(shards) and is_shard_source(shards / MANIFEST)
    assert not is_shard_source(shards.parent / "data") and is_shard_source("https://example.org/s/manifest.json")
    remote, local = read_manifest(url), read_manifest(shards)
    assert remote.splits["val"].urls[0].startswith("file://")
    assert all_keys(remote.splits["val"]) == all_keys(local.splits["val"])
    assert read_index(remote.splits["val"]) == read_index(local.splits["val"])
    images = ShardImageStream(remote.splits["val"], remote.classes, transform=lambda im: torch.tensor(im.size))
    assert [tuple(t.tolist()) for t, _ in images] == [(48, 48)] * len(remote.splits["val"])


def test_streaming_over_http(shards):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(shards)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{MANIFEST}"
        assert is_shard_source(url)
        remote = read_manifest(url)
        assert remote.root == f"http://127.0.0.1:{server.server_address[1]}/"
        local = read_manifest(shards)
        for name in ("train", "test"):
            assert [s.image for s in iter_samples(remote.splits[name])] == [
                s.image for s in iter_samples(local.splits[name])
            ]
        with pytest.raises(GraftcvError, match="No shard manifest"):
            read_manifest(url.replace(MANIFEST, f"missing/{MANIFEST}"))
    finally:
        server.shutdown()
        server.server_close()


def test_bad_manifests_are_one_sentence(tmp_path):
    with pytest.raises(GraftcvError, match="No shard manifest"):
        read_manifest(tmp_path / MANIFEST)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(GraftcvError, match="not a JSON shard manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other/2"}))
    with pytest.raises(GraftcvError, match="not a graftcv shard manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "graftcv-shards/1", "classes": ["a"]}))
    with pytest.raises(GraftcvError, match="garbled"):
        read_manifest(tmp_path)


def test_the_shuffle_buffer_fits_memory():
    assert shuffle_buffer_for(16 * 2**30, mean_sample_bytes=100_000) == 8589  # 5% of 16 GiB over 100 KB
    assert shuffle_buffer_for(2**40, mean_sample_bytes=1000) == 10_000
    assert shuffle_buffer_for(2**20, mean_sample_bytes=10**6) == 100
    assert shuffle_buffer_for(2**40, mean_sample_bytes=1000, split_size=40) == 40
    assert 100 <= shuffle_buffer_for(mean_sample_bytes=100_000) <= 10_000


def test_the_readers_import_no_torch():
    code = "import sys, graftcv.data.shards\nprint('torch' in sys.modules, 'webdataset' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_evaluate_on_shards_equals_evaluate_on_their_folder(data, shards, tmp_path):
    run = graftcv.fit(data, out=tmp_path / "run", strategy="linear-probe", **TINY)
    on_folder, on_shards = run.model.evaluate(data), run.model.evaluate(shards)
    assert on_shards["n"] == on_folder["n"] == 9
    assert on_shards["confusion_matrix"] == on_folder["confusion_matrix"]
    assert on_shards["per_class"] == on_folder["per_class"]
    for key in ("accuracy", "macro_f1", "log_loss"):
        assert on_shards[key] == pytest.approx(on_folder[key], abs=1e-6), key
    assert np.isfinite(on_shards["accuracy"])
    assert evaluation_dir(run.out_dir / "model", shards).name == "shards"
    assert evaluation_dir("m", (shards / MANIFEST).resolve().as_uri()).name == "shards"
    argv, sys.argv = sys.argv, ["graftcv", "evaluate", str(run.out_dir / "model"), str(shards), "--runtime", "torch"]
    try:
        main()
    except SystemExit as done:
        assert not done.code
    finally:
        sys.argv = argv
    written = json.loads((evaluation_dir(run.out_dir / "model", shards) / "metrics.json").read_text())
    assert written["confusion_matrix"] == on_folder["confusion_matrix"]


def test_training_on_shards_streams_them_and_keeps_the_order(make_split_folder, tmp_path: Path, tiny: dict) -> None:
    """`fit(SHARDS)` trains on the shard streams: the same splits as the folder, validation and test outputs in
    the index's order (streams deal images out of order), the test split scored from its shards."""
    import csv as csv_module

    data = make_split_folder(test="test", classes=2, n_train=6, n_val=3)
    write_shards(data, tmp_path / "shards", shard_size="2KB")
    run = graftcv.fit(tmp_path / "shards", out=tmp_path / "run", **tiny)
    assert run.summary["n_train"] == 12 and run.summary["n_val"] == 6 and run.summary["n_test"] == 6
    assert run.config["data_summary"]["layout"] == "shards"
    for split in ("val", "test"):
        with (tmp_path / "shards" / f"{split}-index.csv").open() as handle:
            names = [row["name"] for row in csv_module.DictReader(handle)]
        with (tmp_path / "run" / f"{split}_predictions.csv").open() as handle:
            rows = list(csv_module.DictReader(handle))
        assert [r["path"] for r in rows] == names
        # each row's probabilities are its own image's: the same as predicting that image from the folder
        expected = run.model.predict_proba([str(data / n) for n in names])[0]
        got = np.array([[float(r[c]) for c in run.summary["classes"]] for r in rows])
        assert np.allclose(got, expected, atol=1e-4)


def test_compare_pools_shards_unpacked_once(make_split_folder, tmp_path: Path) -> None:
    """compare draws its folds by index: a shard set is unpacked once into the cache, then pooled like a folder."""
    from graftcv.compare.protocol import pooled_images

    data = make_split_folder(test="test", classes=2, n_train=5, n_val=2)
    write_shards(data, tmp_path / "shards")
    from_folder, from_shards = pooled_images(data), pooled_images(tmp_path / "shards")
    assert from_shards.counts() == from_folder.counts() == {"class_0": 9, "class_1": 9}
    assert sorted(p.read_bytes() for p in from_shards.paths) == sorted(p.read_bytes() for p in from_folder.paths)
    unpacked = {p.parent.parent for p in from_shards.paths}
    assert len(unpacked) == 1 and pooled_images(f"file://{tmp_path / 'shards'}/manifest.json").paths
    assert {p.parent.parent for p in pooled_images(tmp_path / "shards").paths} == unpacked  # reused, not redone
