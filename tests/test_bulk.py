"""`predict --out PATH.parquet`: streamed parts, resume after a kill, several processes and ranks, error rows."""

from __future__ import annotations

import csv
import shutil
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import COLOURS, TINY, write_class_folders, write_image

import graftcv
import graftcv.bulk as bulk
import graftcv.cli
from graftcv import GraftcvError
from graftcv.bulk import engine, predict_to_parquet
from graftcv.bulk.parts import SCHEMA, part_file, parts_dir

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained classifier twice: as saved (torch) and exported (onnx, no torch in spawned processes)."""
    from graftcv.export import export_onnx

    base = tmp_path_factory.mktemp("bulk")
    data = write_class_folders(base / "data", classes=3, per_class=4, size=40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        run = graftcv.fit(data, out=base / "run", strategy="head", **TINY)
        shutil.copytree(run.out_dir / "model", base / "exported")
        export_onnx(base / "exported", images=[data], exporter="torchscript")
    return {"torch": run.out_dir / "model", "onnx": base / "exported", "data": data}


def _table(path: Path):
    return pq.read_table(path).replace_schema_metadata(None)


def test_rows_in_source_order_with_the_models_top1(models, tmp_path):
    out = tmp_path / "p.parquet"
    settings = dict(topk=2, part_size=5, runtime="torch", progress=False)
    done = predict_to_parquet(models["torch"], models["data"], out, **settings)
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    expected = graftcv.load(models["torch"], runtime="torch").predict([str(models["data"])], topk=2)
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [e["path"] for e in expected]  # 12 rows, the order list_images gives
    assert [r["class"] for r in rows] == [e["class"] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row["top_classes"] == [t["class"] for t in want["top"]]
        assert row["probability"] == pytest.approx(want["probability"], abs=1e-5)
        assert row["top_probabilities"] == pytest.approx([t["probability"] for t in want["top"]], abs=1e-5)
        assert row["error"] is None
    assert done["images"] == done["rows"] == 12 and done["parts"] == done["parts_done"] == 3
    assert done["parts_skipped"] == 0 and done["out"] == str(out)
    assert not parts_dir(out).exists()
    with pytest.raises(GraftcvError, match="already exists"):
        predict_to_parquet(models["torch"], models["data"], out, progress=False)


def test_a_killed_run_resumes_without_redoing_finished_parts(models, tmp_path, monkeypatch):
    whole = tmp_path / "whole.parquet"
    predict_to_parquet(models["onnx"], models["data"], whole, part_size=3, progress=False)

    out = tmp_path / "p.parquet"
    real_write = engine.write_part
    written: list[tuple[int, int]] = []

    def killed_after_two(parts, part, tables):
        if len(written) == 2:
            raise KeyboardInterrupt  # the kill
        written.append((part.index, sum(t.num_rows for t in tables)))
        return real_write(parts, part, tables)

    monkeypatch.setattr(engine, "write_part", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        predict_to_parquet(models["onnx"], models["data"], out, part_size=3, progress=False)
    assert written == [(0, 3), (1, 3)]  # each part's rows go to its file: nothing gathers across parts
    first = part_file(parts_dir(out), 0).stat()
    assert not out.exists()

    rewritten: list[int] = []
    seen_before_merge = {}
    real_merge = bulk.merge

    def recording_write(parts, part, tables):
        rewritten.append(part.index)
        return real_write(parts, part, tables)

    def recording_merge(parts, count, target, metadata):
        seen_before_merge["stat"] = part_file(parts, 0).stat()
        return real_merge(parts, count, target, metadata)

    monkeypatch.setattr(engine, "write_part", recording_write)
    monkeypatch.setattr(bulk, "merge", recording_merge)
    done = predict_to_parquet(models["onnx"], models["data"], out, part_size=3, progress=False)
    assert rewritten == [2, 3] and done["parts_skipped"] == 2 and done["parts_done"] == 2 and done["images"] == 6
    again = seen_before_merge["stat"]
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert _table(out).equals(_table(whole))


def _main(monkeypatch, *argv) -> int:
    monkeypatch.setattr(sys, "argv", ["graftcv", *map(str, argv)])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    return done.value.code


def test_cli_refuses_parts_of_another_plan(models, tmp_path, monkeypatch, capsys, restore_logging):
    out, real_write = tmp_path / "p.parquet", engine.write_part
    monkeypatch.setattr(engine, "write_part", _raises_after(1))
    with pytest.raises(KeyboardInterrupt):
        predict_to_parquet(models["onnx"], models["data"], out, part_size=3, progress=False)
    monkeypatch.setattr(engine, "write_part", real_write)
    assert _main(monkeypatch, "predict", models["onnx"], models["data"], "--out", out, "--part-size", "4") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds the parts of another prediction (its part_size differ)" in err and "Traceback" not in err
    args = ["predict", models["onnx"], models["data"], "--out", out, "--part-size", "4", "--overwrite", "--topk", "1"]
    assert _main(monkeypatch, *args) == 0
    captured = " ".join(capsys.readouterr().out.split())
    assert "12 images in" in captured and f"wrote {out}" in captured
    table = pq.read_table(out)
    assert table.num_rows == 12 and all(len(t) == 1 for t in table.column("top_classes").to_pylist())


def _raises_after(n: int):
    real_write = engine.write_part
    count = [0]

    def write(parts, part, tables):
        if count[0] == n:
            raise KeyboardInterrupt
        count[0] += 1
        return real_write(parts, part, tables)

    return write


def test_two_workers_write_what_one_writes(models, tmp_path):
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    predict_to_parquet(models["onnx"], models["data"], one, part_size=2, progress=False)
    done = predict_to_parquet(models["onnx"], models["data"], two, part_size=2, workers=2, progress=False)
    assert done["images"] == 12 and done["parts_done"] == 6
    assert _table(two).equals(_table(one))


def test_ranks_share_the_parts_and_rank_0_merges(models, tmp_path, monkeypatch):
    alone, out = tmp_path / "alone.parquet", tmp_path / "ranks.parquet"
    predict_to_parquet(models["onnx"], models["data"], alone, part_size=5, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    done = predict_to_parquet(models["onnx"], models["data"], out, part_size=5, progress=False)
    assert (done["out"], done["parts_done"], done["images"]) == (None, 1, 5) and not out.exists()
    assert [p.name for p in sorted(parts_dir(out).glob("part-*"))] == ["part-000001.parquet"]
    monkeypatch.setenv("RANK", "0")
    done = predict_to_parquet(models["onnx"], models["data"], out, part_size=5, progress=False)
    assert (done["parts_done"], done["images"], done["rows"]) == (2, 7, 12)
    assert _table(out).equals(_table(alone))


def test_rank_0_waits_for_the_other_ranks(models, tmp_path, monkeypatch):
    """Rank 0 first: it does its parts, then polls the shared folder until rank 1 (a thread here) wrote its own."""
    out = tmp_path / "ranks.parquet"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    real_wait = bulk.wait_for_parts

    def rank_1_starts_late(parts, count, timeout):
        assert not part_file(parts, 1).exists()
        monkeypatch.setenv("RANK", "1")  # rank 0 read its rank already: what starts now is rank 1
        args = (models["onnx"], models["data"], out)
        rank_1 = threading.Thread(target=predict_to_parquet, args=args, kwargs={"part_size": 5, "progress": False})
        rank_1.start()
        real_wait(parts, count, timeout, poll=0.05)
        rank_1.join()

    monkeypatch.setattr(bulk, "wait_for_parts", rank_1_starts_late)
    done = predict_to_parquet(models["onnx"], models["data"], out, part_size=5, progress=False)
    assert (done["rows"], done["parts_done"], done["rank"]) == (12, 2, 0)


def test_unreadable_and_missing_files_get_error_rows(models, tmp_path):
    images = tmp_path / "images"
    write_image(images / "a.jpg", COLOURS[0], seed=1)
    (images / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (images / "c.png").write_bytes(b"")
    write_image(images / "d.png", COLOURS[1], seed=2)
    (images / "notes.txt").write_text("not an image: not listed from a folder")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{images / 'a.jpg'}\nnowhere.jpg\n")
    out = tmp_path / "p.parquet"
    done = predict_to_parquet(models["torch"], [images, listed], out, part_size=3, runtime="torch", progress=False)
    rows = pq.read_table(out).to_pylist()
    assert [Path(r["path"]).name for r in rows] == ["a.jpg", "b.jpg", "c.png", "d.png", "a.jpg", "nowhere.jpg"]
    assert [r["error"] is not None for r in rows] == [False, True, True, False, False, True]
    assert rows[5]["error"] == "missing file" and rows[5]["path"] == str(tmp_path / "nowhere.jpg")
    for row in rows:
        assert (row["class"] is None) == (row["error"] is not None)
        assert (row["top_classes"] is None) == (row["top_probabilities"] is None) == (row["error"] is not None)
    assert done["errors"] == 3 and done["rows"] == 6


def test_txt_and_csv_sources(models, tmp_path):
    data = models["data"]
    chosen = [data / "class_2" / "img_01.jpg", data / "class_0" / "img_03.jpg", data / "class_1" / "img_00.jpg"]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "images.txt").write_text("\n".join(str(p) for p in chosen) + "\n\n")
    relative = tmp_path / "copy" / "x.jpg"
    relative.parent.mkdir()
    shutil.copy(chosen[0], relative)
    with (tmp_path / "images.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "path"])
        writer.writerows([["?", "copy/x.jpg"], ["?", str(chosen[1])]])
    out = tmp_path / "p.parquet"
    predict_to_parquet(models["onnx"], [lists / "images.txt", tmp_path / "images.csv"], out, progress=False)
    rows = pq.read_table(out).to_pylist()
    assert [r["path"] for r in rows] == [*map(str, chosen), str(relative), str(chosen[1])]
    assert rows[3]["top_probabilities"] == pytest.approx(rows[0]["top_probabilities"], abs=1e-6)
    assert len(rows[0]["top_classes"]) == 3  # topk 5, capped at the 3 classes
    (tmp_path / "bad.csv").write_text("file,label\na.jpg,x\n")
    with pytest.raises(GraftcvError, match="no 'path' column"):
        predict_to_parquet(models["onnx"], tmp_path / "bad.csv", tmp_path / "q.parquet", progress=False)


def test_a_dead_worker_is_one_sentence_and_the_rerun_finishes(models, tmp_path, monkeypatch):
    import os
    import signal

    from graftcv.bulk.workers import Processes

    out, real_submit, submitted = tmp_path / "p.parquet", Processes.submit, []

    def kill_one(self, part):
        real_submit(self, part)
        submitted.append(part.index)
        if len(submitted) == 2:
            os.kill(self.processes[0].pid, signal.SIGKILL)

    monkeypatch.setattr(Processes, "submit", kill_one)
    with pytest.raises(GraftcvError, match=r"Prediction process 0 died \(exit code -9\).*run the same command again"):
        predict_to_parquet(models["onnx"], models["data"], out, part_size=2, workers=2, progress=False)
    monkeypatch.setattr(Processes, "submit", real_submit)
    done = predict_to_parquet(models["onnx"], models["data"], out, part_size=2, progress=False)
    assert done["rows"] == 12 and done["parts_skipped"] + done["parts_done"] == 6


def test_a_shard_set_is_predicted_shard_by_shard(models, tmp_path):
    from graftcv.data.shard_writer import write_shards
    from graftcv.data.shards import read_manifest

    shards = tmp_path / "shards"
    write_shards(models["data"], shards, shard_size="4KiB")
    counts = [n for split in read_manifest(shards).splits.values() for n in split.counts]
    out = tmp_path / "p.parquet"
    done = predict_to_parquet(models["onnx"], shards, out, part_size=1, progress=False)
    assert done["parts"] == len(counts) > 2 and done["rows"] == sum(counts) == 12
    rows = pq.read_table(out).to_pylist()
    by_path = {Path(r["path"]).relative_to(models["data"]).as_posix(): r for r in _folder_rows(models, tmp_path)}
    for row in rows:
        name, _, where = row["path"].partition(" (")
        assert where.startswith(str(shards / "train-")) or where.startswith(str(shards / "val-"))
        assert row["top_classes"] == by_path[name]["top_classes"]
        assert row["top_probabilities"] == pytest.approx(by_path[name]["top_probabilities"], abs=1e-6)
    assert sorted(by_path) == sorted(r["path"].partition(" (")[0] for r in rows)
    with pytest.raises(GraftcvError, match="on its own"):
        predict_to_parquet(models["onnx"], [shards, models["data"]], tmp_path / "q.parquet", progress=False)


def _folder_rows(models: dict, tmp_path: Path) -> list[dict]:
    out = tmp_path / "folder.parquet"
    predict_to_parquet(models["onnx"], models["data"], out, progress=False)
    return pq.read_table(out).to_pylist()


def test_the_bar_counts_what_this_rank_has_left(tmp_path):
    from graftcv.bulk import _count_for_bar
    from graftcv.bulk.sources import PathSource

    write_class_folders(tmp_path / "data", classes=1, per_class=7)
    totals = []

    class Bar:
        def update(self, task, total):
            totals.append(total)

    source = PathSource([tmp_path / "data"])
    assert source.sizes(3) == [3, 3, 1]
    _count_for_bar(source, 3, 0, 1, set(), Bar(), 0)
    _count_for_bar(source, 3, 0, 2, set(), Bar(), 0)  # parts 0 and 2
    _count_for_bar(source, 3, 0, 1, {1}, Bar(), 0)  # part 1 done before this run
    assert totals == [7, 4, 4]
