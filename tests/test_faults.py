"""Fault injection: full disks, read-only places, two runs on one directory, failed overwrites, sizes that cannot
fit, half-written cache files. Each case: exit code 2 (or the API's GraftcvError), one sentence, nothing lost.

Other faults live beside the code they exercise: SIGINT and SIGKILL mid-epoch with --resume (test_resume.py),
damaged feature-cache entries (test_features.py), edited and pickled artifacts (test_artifact_safety.py),
bad files and options (test_cli.py, test_data.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_class_folders
from test_cli import TINY_ARGS, _contents, flat, run_cli

import graftcv
import graftcv.atomic
import graftcv.cli
import graftcv.fitting
from graftcv.errors import GraftcvError
from graftcv.rundir import claimed, staging_dir


def _main(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    """graftcv's CLI in this process: (exit code, stderr with whitespace collapsed)."""
    monkeypatch.setattr(sys, "argv", ["graftcv", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    return done.value.code, flat(capsys.readouterr().err)


def _one_error(err: str) -> None:
    assert err.count("error:") == 1, err
    assert "Traceback" not in err


@pytest.fixture
def finished_run(tmp_path, tiny) -> tuple[Path, Path, dict[str, bytes]]:
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    out = tmp_path / "run"
    graftcv.fit(data, out=out, **tiny)
    return data, out, _contents(out)


# --- a full disk ----------------------------------------------------------------------------------------------


def _disk_full_on(monkeypatch, fragment: str) -> None:
    """Atomic writes of files whose path contains `fragment` fail as on a full disk."""
    real = graftcv.atomic.write_bytes

    def write_bytes(path, data):
        if fragment in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(graftcv.atomic, "write_bytes", write_bytes)


@pytest.mark.parametrize("fragment", ["config.json", "val_metrics.json", "summary.json"])
def test_full_disk_while_writing_a_run_is_one_sentence(fragment, tmp_path, monkeypatch, capsys, restore_logging):
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    _disk_full_on(monkeypatch, fragment)
    code, err = _main(monkeypatch, capsys, "train", data, *TINY_ARGS, "--out", tmp_path / "run")
    assert code == 2
    _one_error(err)
    assert "The disk is full writing" in err and fragment in err


def test_full_disk_during_an_overwrite_keeps_the_old_run_whole(finished_run, monkeypatch, capsys, restore_logging):
    data, out, before = finished_run
    _disk_full_on(monkeypatch, "metrics.csv")  # after the new model is saved: late in the run
    code, err = _main(monkeypatch, capsys, "train", data, *TINY_ARGS, "--out", out, "--overwrite")
    assert code == 2
    _one_error(err)
    assert "The disk is full" in err
    assert _contents(out) == before, "a failed overwrite must leave the old run as it was"
    assert not staging_dir(out).exists()


def test_an_overwrite_that_finishes_replaces_the_run_whole(finished_run, tiny) -> None:
    data, out, before = finished_run
    run = graftcv.fit(data, out=out, overwrite=True, **tiny | {"seed": 1})
    after = _contents(out)
    assert run.out_dir == out and set(after) == set(before)
    assert after["config.json"] != before["config.json"]  # the new run's settings (seed 1)
    assert not staging_dir(out).exists()
    assert run.summary["model_dir"] == str(out / "model")


def test_a_full_disk_in_a_real_filesystem(tmp_path) -> None:
    """A 1 MB tmpfs as --out (root only): the real ENOSPC, whichever file meets it first."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
        (mount / "ballast").write_bytes(b"\0" * 900_000)  # leaves ~100 kB: the 19 MB weights cannot fit
        done = run_cli("train", data, *TINY_ARGS, "--model", "resnet18", "--out", mount / "run", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        err = flat(done.stderr)
        _one_error(err)
        assert "The disk is full" in err
        leftovers = [p.name for p in (mount / "run").rglob("*.partial")]
        assert not leftovers, "half-written files are removed"
    finally:
        subprocess.run(["umount", mount], check=False)


def test_full_disk_while_reserving_a_feature_shard(tmp_path, monkeypatch) -> None:
    import timm

    from graftcv.backbones import data_config_for
    from graftcv.features import extract_features

    model = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    paths = sorted(write_class_folders(tmp_path / "data", classes=2, per_class=3).rglob("*.jpg"))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    cache = tmp_path / "cache"
    with pytest.raises(OSError) as error:
        extract_features(model, paths, data_config_for(model, size=32), {"name": "r"}, cache_dir=cache, progress=False)
    assert error.value.errno == errno.ENOSPC
    assert not list(cache.rglob("*.npy")), "no half shard is left behind"


def test_shards_left_by_dead_processes_are_swept(tmp_path) -> None:
    from graftcv import features
    from graftcv.features import FeatureStore

    store = FeatureStore(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    dead = tmp_path / ".20260101000000-abcd.999999999.partial.npy"
    dead_here = tmp_path / f".20260101000000-abce.999999999@{features._host()}.partial.npy"
    live = tmp_path / f".20260101000000-ef01.{os.getpid()}.partial.npy"
    # a cache shared by several machines (multi-node runs): a PID of another host says nothing of its process here
    elsewhere = tmp_path / ".20260101000000-ef02.999999999@another-node.partial.npy"
    for path in (dead, dead_here, live, elsewhere):
        np.save(path, np.zeros(3, dtype=np.float32))
    assert store.sweep_partials() == 2
    assert not dead.exists() and not dead_here.exists() and live.exists() and elsewhere.exists()


# --- places that cannot be written ----------------------------------------------------------------------------


def test_read_only_out_is_one_sentence(tmp_path, monkeypatch, capsys, restore_logging) -> None:
    if os.geteuid() == 0:  # root writes anywhere: pretend the place is read-only
        real_mkdir = Path.mkdir

        def read_only_mkdir(self, *args, **kwargs):
            if "locked" in str(self):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    else:
        (tmp_path / "locked").mkdir(mode=0o500)
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    code, err = _main(monkeypatch, capsys, "train", data, *TINY_ARGS, "--out", tmp_path / "locked" / "run")
    assert code == 2
    _one_error(err)
    assert "Cannot write the run to" in err


# --- two runs on one directory --------------------------------------------------------------------------------


def test_a_second_run_on_the_same_out_is_refused_with_the_holder_s_pid(tmp_path, tiny) -> None:
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    out = tmp_path / "run"
    with claimed(out):  # as another run would hold it
        with pytest.raises(GraftcvError, match=rf"is in use by another graftcv run \(PID {os.getpid()}\)"):
            graftcv.fit(data, out=out, **tiny)
        assert not out.exists(), "the refused run wrote nothing"
    graftcv.fit(data, out=out, **tiny)  # the lock went with its holder
    assert (out / "summary.json").is_file()


def test_a_killed_holder_leaves_no_lock(tmp_path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from graftcv.rundir import claimed; import time, pathlib\n"
         f"with claimed(pathlib.Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GraftcvError, match=f"PID {holder.pid}"), claimed(out):
            pass
        holder.kill()
        holder.wait(timeout=30)
        with claimed(out):  # SIGKILL released it
            pass
    finally:
        holder.kill()


# --- sizes the machine cannot hold ----------------------------------------------------------------------------


def test_an_absurd_size_is_refused_before_anything_runs(tmp_path, tiny) -> None:
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    with pytest.raises(GraftcvError, match="--size must be between 16 and 4096 pixels, not 100000"):
        graftcv.fit(data, out=tmp_path / "run", **tiny | {"size": 100000})
    assert not (tmp_path / "run").exists()


def test_a_size_that_does_not_fit_in_memory_says_what_would(tmp_path, tiny, monkeypatch) -> None:
    import graftcv.backbones.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)  # a 1 GB machine
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    with pytest.raises(GraftcvError, match=r"--size 2048 needs about .* GB of memory .*\(about \d+ px fits\)") as error:
        graftcv.fit(data, out=tmp_path / "run", **tiny | {"size": 2048, "strategy": "full"})
    assert not (tmp_path / "run").exists()
    fits = int(str(error.value).split("(about ")[-1].split(" px")[0])
    assert 32 <= fits < 2048
    graftcv.fitting.prepare(data, tiny | {"size": fits, "strategy": "full"})  # the size it names passes the check


# --- two runs on one feature cache ----------------------------------------------------------------------------

_EXTRACT = """
import sys, numpy as np, timm, torch
from pathlib import Path
from graftcv.backbones import data_config_for
from graftcv.features import extract_features
torch.manual_seed(0)
model = timm.create_model("resnet10t", pretrained=False, num_classes=2)
paths = sorted(Path(sys.argv[1]).rglob("*.jpg"))
features = extract_features(model, paths, data_config_for(model, size=32), {"name": "r", "weights": "w"},
                            batch_size=2, num_workers=0, cache_dir=Path(sys.argv[2]), progress=False)
np.save(sys.argv[3], np.asarray(features))
"""


def test_two_passes_on_one_cache_at_once_agree(tmp_path) -> None:
    data = write_class_folders(tmp_path / "data", classes=2, per_class=6)
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", _EXTRACT, str(data), str(cache)]
    runs = [subprocess.Popen([*command, str(tmp_path / f"out{i}.npy")]) for i in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    first, second = (np.load(tmp_path / f"out{i}.npy") for i in range(2))
    assert np.array_equal(first, second)
    again = subprocess.run([*command, str(tmp_path / "again.npy")], timeout=300)
    assert again.returncode == 0
    assert np.array_equal(np.load(tmp_path / "again.npy"), first)  # the cache both left is whole and right
    assert not list(cache.rglob("*.partial.npy"))
