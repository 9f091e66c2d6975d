"""`compare`: the protocol (folds, repeats, shots), nested tuning without leaks, statistics, verdicts, files, CLI."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from graftcv import GraftcvError
from graftcv.cli import app
from graftcv.compare import (
    build_splits,
    compare,
    headline,
    parse_shots,
    summarize,
    transfer_verdicts,
    tuning_grid,
)
from graftcv.compare.protocol import content_groups, pooled_images, splits_record
from graftcv.data import ImageSet
from graftcv.strategies import STRATEGIES, Strategy, register_strategy
from graftcv.training.phase import Phase

LABELS = ["a"] * 12 + ["b"] * 10 + ["c"] * 9


def _paths(images: ImageSet | None) -> list[str]:
    return [] if images is None else [str(path) for path in images.paths]


def _splits(out_dir: Path) -> list[dict]:
    """splits.json: per split, the train/val/test image paths and the training images of each shot level."""
    return json.loads((Path(out_dir) / "splits.json").read_text())["splits"]


class SpyFit:
    """Stands in for `graftcv.fit`: records the images of every call and returns made-up, deterministic scores
    (validation accuracy depends on the candidate's lr/epochs, so nested tuning has something to choose)."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.calls: list[dict] = []
        self.evaluated: list[dict] = []
        self.sleep = sleep

    def __call__(self, data, out=None, overwrite=False, **settings):
        time.sleep(self.sleep)
        assert "val" not in settings and "test" not in settings  # in-memory splits carry their own sets
        call = {
            "out": Path(out),
            "train": _paths(data.train),
            "val": _paths(data.val),
            "test": _paths(data.test),
            "settings": settings,
        }
        self.calls.append(call)
        Path(out).mkdir(parents=True, exist_ok=True)
        lr = float(settings.get("lr") or 1e-3)
        val_acc = round(0.5 + 0.1 * math.log10(lr * 1e4) + 0.01 * (settings.get("epochs") or 1), 4)
        summary = {"val_accuracy": val_acc, "train_seconds": 1.0, "epochs": 2}
        if data.test is not None:
            summary |= {"test_accuracy": 0.8, "test_balanced_accuracy": 0.75, "test_macro_f1": 0.7}
        history = [
            {"phase": "x", "epoch": 1, "val_acc": val_acc / 2, "seconds": 0.5},
            {"phase": "x", "epoch": 2, "val_acc": val_acc, "seconds": 1.0},
        ]
        model = SimpleNamespace(evaluate_images=lambda images: self._evaluate(out, images))
        return SimpleNamespace(out_dir=Path(out), summary=summary, history=history, model=model)

    def _evaluate(self, out, images: ImageSet) -> dict:
        self.evaluated.append({"out": Path(out), "test": _paths(images), "after_calls": len(self.calls)})
        return {"accuracy": 0.9, "balanced_accuracy": 0.85, "macro_f1": 0.8}


@pytest.fixture
def data(make_folder) -> Path:
    return make_folder(classes=3, per_class=10)


def _split_of(path: Path) -> int:
    return int(next(part for part in path.parts if part.startswith("split-")).removeprefix("split-"))


# --- protocol --------------------------------------------------------------------------------------


def test_kfold_puts_every_image_in_exactly_one_test_fold():
    splits = build_splits(LABELS, folds=3, seed=4)
    tests = np.concatenate([s.test for s in splits])
    assert sorted(tests.tolist()) == list(range(len(LABELS)))
    for split in splits:
        parts = [set(split.train), set(split.val), set(split.test)]
        assert sum(map(len, parts)) == len(LABELS) and set().union(*parts) == set(range(len(LABELS)))
        assert {LABELS[i] for i in split.val} == {"a", "b", "c"}  # stratified validation
    assert [s.test.tolist() for s in build_splits(LABELS, folds=3, seed=4)] == [s.test.tolist() for s in splits]


def test_repeats_draw_different_held_out_sets():
    splits = build_splits(LABELS, repeats=3, test_fraction=0.3, seed=0)
    assert len(splits) == 3 and len({tuple(s.test) for s in splits}) == 3
    assert all(len(s.test) == math.ceil(0.3 * len(LABELS)) for s in splits)  # scikit-learn rounds up


def test_shot_subsets_are_balanced_nested_and_inside_the_training_pool():
    splits = build_splits(LABELS, repeats=2, shots=parse_shots("4,1,2,all"), seed=1)
    for split in splits:
        assert list(split.subsets) == ["1", "2", "4", "all"]
        previous: set[int] = set()
        for level in ("1", "2", "4"):
            subset = set(split.subsets[level].tolist())
            labels = [LABELS[i] for i in subset]
            assert all(labels.count(c) == int(level) for c in "abc")
            assert previous < subset <= set(split.train)  # nested across K, never val or test
            previous = subset
        assert set(split.subsets["all"]) == set(split.train)
    assert set(splits[0].subsets["2"]) != set(splits[1].subsets["2"])


def test_regularized_variants_are_rows_of_their_own(data, tmp_path):
    spy = SpyFit()
    result = compare(data, strategies="finetune,finetune+l2sp,finetune+l2sp+bss", folds=2, out=tmp_path / "c", fit=spy)
    by_row = {c["out"].name: c["settings"] for c in spy.calls}
    assert by_row["finetune"].get("reg") is None
    assert by_row["finetune+l2sp"]["reg"] == "l2sp" and by_row["finetune+l2sp+bss"]["reg"] == "l2sp,bss"
    assert {s["strategy"] for s in by_row.values()} == {"finetune"}
    assert {row["strategy"] for row in result.rows} == set(by_row)


def test_strategies_see_identical_images(data, tmp_path):
    spy = SpyFit()
    strategies = "prototype,linear-probe,scratch"
    compare(data, strategies=strategies, folds=3, shots="1,all", out=tmp_path / "c", fit=spy, epochs=3, pretrained=True)
    assert len(spy.calls) == 3 * 2 * 3
    by_cell: dict[tuple, list] = {}
    for call in spy.calls:
        by_cell.setdefault((_split_of(call["out"]), call["out"].parent.name), []).append(call)
    for calls in by_cell.values():
        assert len(calls) == 3
        assert all(
            (c["train"], c["val"], c["test"]) == (calls[0]["train"], calls[0]["val"], calls[0]["test"]) for c in calls
        )
    assert {c["settings"]["strategy"] for c in spy.calls} == {"prototype", "linear-probe", "scratch"}
    scratch = [c["settings"] for c in spy.calls if c["settings"]["strategy"] == "scratch"]
    # scratch's fixed settings are not overridden by the shared ones, and it trains for --scratch-epochs;
    # its recipe's defaults (augment, bn, patience) are fit's to apply
    assert all(s.get("pretrained", False) is False and "weights" not in s and s["epochs"] == 30 for s in scratch)
    transfer = [c["settings"] for c in spy.calls if c["settings"]["strategy"] != "scratch"]
    assert all(s["pretrained"] is True and s["epochs"] == 3 for s in transfer)
    record = _splits(tmp_path / "c")
    assert len(record) == 3 and all(set(split["shots"]) == {"1", "all"} for split in record)


# --- nested tuning ---------------------------------------------------------------------------------


def test_nested_cv_never_shows_the_outer_test_fold_to_a_choice(data, tmp_path):
    spy = SpyFit()
    result = compare(
        data, strategies="prototype,partial", folds=3, tune="lr,epochs,unfreeze", out=tmp_path / "c", fit=spy
    )
    # the held-out images of each outer split, as compare recorded them
    test_folds = {split["index"]: set(split["test"]) for split in _splits(result.out_dir)}
    tuning = [c for c in spy.calls if c["out"].name.startswith("tune-")]
    assert len(tuning) == 3 * (3 * 3 * 3)  # partial: lr × epochs × unfreeze on each fold; prototype is not tuned
    for call in tuning:
        held_out = test_folds[_split_of(call["out"])]
        assert call["test"] == []  # no tuning run is given a test set ...
        assert not held_out & (set(call["train"]) | set(call["val"]))  # ... nor any held-out image to train or choose
    assert len(spy.evaluated) == 3  # the chosen model meets its test fold once, after every candidate ran
    for evaluation in spy.evaluated:
        split = _split_of(evaluation["out"])
        assert set(evaluation["test"]) == test_folds[split]
        assert evaluation["after_calls"] == max(i + 1 for i, c in enumerate(spy.calls) if _split_of(c["out"]) == split)
    chosen = [row["chosen"] for row in result.rows if row["strategy"] == "partial"]
    assert all(c["lr"] == pytest.approx(3e-3) and c["epochs"] == 16 for c in chosen)  # the spy's best candidate
    assert all(row["test_accuracy"] == 0.9 for row in result.rows if row["strategy"] == "partial")


def test_tuning_grid_is_small_and_fits_the_strategy():
    assert tuning_grid("prototype", ["lr", "epochs"], {"strategy": "prototype"}) == []
    grid = tuning_grid("finetune", ["lr", "unfreeze"], {"strategy": "finetune", "lr": None})
    assert [g["lr"] for g in grid] == pytest.approx([1e-4, 3e-4, 9e-4])  # unfreeze means nothing to finetune
    assert len(tuning_grid("scratch", ["epochs"], {"strategy": "scratch", "epochs": 30})) == 3
    head = tuning_grid("head", ["lr", "epochs"], {"strategy": "head"})  # base values from the registry
    assert sorted({g["lr"] for g in head}) == pytest.approx([1e-3, 3e-3, 9e-3])
    assert {g["epochs"] for g in head} == {7, 15, 30}


def test_a_registered_strategy_is_compared_with_no_other_change(data, tmp_path):
    name = "last-layer"
    register_strategy(Strategy(name, "test", lambda s: [Phase(name, s.epochs, s.lr, trainable=1)], epochs=1, lr=1e-3))
    try:
        spy = SpyFit()
        result = compare(data, strategies=f"prototype,{name}", folds=2, tune="lr", out=tmp_path / "c", fit=spy)
    finally:
        STRATEGIES.unregister(name)
    assert {row["strategy"] for row in result.rows} == {"prototype", name}
    tuned = [c["settings"] for c in spy.calls if c["settings"]["strategy"] == name]
    assert len(tuned) == 2 * 3 and sorted({s["lr"] for s in tuned}) == pytest.approx([1e-3 / 3, 1e-3, 3e-3])
    assert not [c for c in spy.calls if c["settings"]["strategy"] == "prototype" and "lr" in c["settings"]]


# --- statistics and words --------------------------------------------------------------------------


def test_mean_std_and_t_confidence_interval():
    stat = summarize([1.0, 2.0, 3.0, 4.0])
    assert stat["n"] == 4 and stat["mean"] == 2.5 and stat["std"] == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) × s / √n
    assert (stat["ci_low"], stat["ci_high"]) == pytest.approx((2.5 - half, 2.5 + half))
    assert summarize([0.7, 0.7, 0.7])["ci_low"] == pytest.approx(0.7)  # no spread: the interval is the mean
    assert math.isnan(summarize([0.7])["ci_low"]) and summarize([])["n"] == 0


def _rows(strategy: str, accuracies: list[float], shots: str = "all") -> list[dict]:
    return [{"strategy": strategy, "shots": shots, "split": i, "test_accuracy": a} for i, a in enumerate(accuracies)]


def test_negative_transfer_is_said_in_words_only_beyond_the_interval():
    rows = (
        _rows("scratch", [0.90, 0.92, 0.91])
        + _rows("head", [0.70, 0.73, 0.71])  # scratch far ahead: negative transfer
        + _rows("finetune", [0.97, 0.98, 0.96])  # transfer clearly ahead
        + _rows("linear-probe", [0.93, 0.89, 0.92])  # mixed: within the noise
    )
    verdicts = {v["strategy"]: v for v in transfer_verdicts(rows)}
    assert verdicts["head"]["kind"] == "negative-transfer"
    assert verdicts["head"]["scratch_minus_transfer"] == pytest.approx(0.1967, abs=1e-4)
    assert "negative transfer" in verdicts["head"]["sentence"] and "19.7 points" in verdicts["head"]["sentence"]
    assert verdicts["finetune"]["kind"] == "transfer-helps" and "6.0 points" in verdicts["finetune"]["sentence"]
    assert verdicts["linear-probe"]["kind"] == "no-clear-difference"
    assert "within the noise" in verdicts["linear-probe"]["sentence"]
    assert headline(list(verdicts.values())).startswith("Negative transfer: training from scratch beats head")
    calm = transfer_verdicts(_rows("scratch", [0.5, 0.6]) + _rows("finetune", [0.9, 0.95]))
    assert headline(calm).startswith("No negative transfer")
    assert transfer_verdicts(_rows("finetune", [0.9])) == []  # no scratch, nothing to say


# --- runs, files, budget, resume -------------------------------------------------------------------


def test_same_seed_same_table(data, tiny, tmp_path):
    tables, trains = [], []
    for name, seed in (("one", 3), ("two", 3)):
        result = compare(data, strategies="prototype,linear-probe", folds=2, seed=seed, out=tmp_path / name, **tiny)
        scores = [{k: v for k, v in e.items() if k.startswith("test_") or k in ("strategy", "n")} for e in result.table]
        tables.append(scores)
        trains.append((tmp_path / name / "splits.json").read_text())
    assert tables[0] == tables[1] and trains[0] == trains[1]
    labels = [p.parent.name for p in sorted(data.rglob("*.jpg"))]
    assert [s.test.tolist() for s in build_splits(labels, folds=2, seed=4)] != [
        s.test.tolist() for s in build_splits(labels, folds=2, seed=3)
    ]  # another seed draws other folds
    files = {p.name for p in (tmp_path / "one").iterdir()}
    assert {"compare.json", "compare.csv", "runs.csv", "compare.html", "accuracy_vs_shots.png", "curves.png"} <= files
    record = json.loads((tmp_path / "one" / "compare.json").read_text())
    assert len(record["runs"]) == 4 and record["protocol"]["splits"] == 2
    assert not list((tmp_path / "one" / "runs").rglob("model.safetensors"))  # models dropped by default


def test_budget_stops_launching_and_names_missing_cells(data, tmp_path):
    spy = SpyFit(sleep=0.4)
    result = compare(data, strategies="prototype,head", folds=3, budget="1s", out=tmp_path / "c", fit=spy)
    assert 1 <= len(result.rows) < 6 and len(result.rows) + len(result.missing) == 6
    assert all("max_time" in c["settings"] for c in spy.calls)
    assert "Budget spent" in (tmp_path / "c" / "compare.html").read_text()
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["missing"] == result.missing


def test_resume_reuses_finished_cells(data, tmp_path):
    first = compare(data, strategies="prototype,scratch", folds=2, out=tmp_path / "c", fit=SpyFit())
    with pytest.raises(GraftcvError, match="already holds a comparison"):
        compare(data, strategies="prototype,scratch", folds=2, out=tmp_path / "c", fit=SpyFit())

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    again = compare(data, strategies="prototype,scratch", folds=2, out=tmp_path / "c", fit=no_fit, resume=True)
    assert again.table == first.table
    with pytest.raises(GraftcvError, match="cannot be resumed"):
        compare(data, strategies="prototype", folds=2, out=tmp_path / "c", fit=no_fit, resume=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategies": "prototype,bogus"}, "Unknown strategy 'bogus'"),
        ({"shots": "1,20"}, "--shots 20 needs 20 training images"),
        ({"shots": "0"}, "positive image counts"),
        ({"folds": 11}, "--folds 11 is more than the 10 images"),
        ({"folds": 3, "repeats": 2}, "not both"),
        ({"tune": "momentum"}, "--tune 'momentum' is not tunable"),
        ({"strategy": "full"}, "compare sets strategy itself"),
        ({"budget": "soon"}, "--budget must look like 90s"),
        ({"strategies": "finetune+dropout"}, "Unknown regularizer 'dropout'"),
        ({"strategies": "linear-probe+bss"}, "closed form"),
    ],
)
def test_bad_input_is_one_sentence(data, tmp_path, options, message):
    with pytest.raises(GraftcvError, match=message):
        compare(data, out=tmp_path / "c", fit=SpyFit(), **options)


def test_cli_compare_end_to_end(data, tmp_path):
    out = tmp_path / "cli"
    args = ["compare", str(data), "--strategies", "prototype,scratch", "--folds", "2", "--scratch-epochs", "1"]
    args += ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--batch-size", "8", "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "prototype" in result.output and "scratch" in result.output and "accuracy" in result.output
    with (out / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["strategy"] for r in rows) == ["prototype", "prototype", "scratch", "scratch"]
    assert all(int(r["epochs_to_95"]) >= 1 for r in rows if r["strategy"] == "scratch")
    assert "data:image/png;base64," in (out / "compare.html").read_text()


# --- byte-identical files (issue 23) ---------------------------------------------------------------


def test_folds_without_copies_are_those_drawn_before_grouping():
    """Every image its own group gives the folds, validation sets and shots drawn image by image (pinned: these
    are the indices compare drew before it grouped copies)."""
    splits = build_splits(LABELS, folds=3, seed=4)
    assert [s.test.tolist() for s in splits] == [
        [0, 5, 7, 8, 13, 16, 18, 19, 25, 26, 28],
        [1, 2, 9, 10, 14, 15, 17, 27, 29, 30],
        [3, 4, 6, 11, 12, 20, 21, 22, 23, 24],
    ]
    assert [s.val.tolist() for s in splits] == [[9, 10, 14, 23], [5, 8, 18, 21, 26], [1, 2, 13, 15, 27]]
    shots = build_splits(LABELS, repeats=2, shots=["1", "2"], seed=1)
    assert [s.subsets["2"].tolist() for s in shots] == [[1, 4, 19, 21, 23, 25], [6, 7, 13, 16, 26, 29]]
    unique = [f"digest-{i}" for i in range(len(LABELS))]
    for options in ({"folds": 3, "seed": 4}, {"repeats": 3, "shots": ["1", "2", "all"], "seed": 2}):
        plain, grouped = build_splits(LABELS, **options), build_splits(LABELS, groups=unique, **options)
        for one, other in zip(plain, grouped, strict=True):
            assert (one.train.tolist(), one.val.tolist(), one.test.tolist()) == (
                other.train.tolist(),
                other.val.tolist(),
                other.test.tolist(),
            )
            assert {k: v.tolist() for k, v in one.subsets.items()} == {k: v.tolist() for k, v in other.subsets.items()}
            assert other.copies == []


@pytest.fixture
def copies(make_folder) -> Path:
    """3 classes of 10 images, plus copies: renamed in the same class, in other classes, and one image 4 times."""
    root = make_folder(classes=3, per_class=10)
    for source, target in [
        ("class_0/img_00.jpg", "class_0/again.jpg"),
        ("class_0/img_01.jpg", "class_1/from_0.jpg"),  # the same bytes under two labels
        ("class_1/img_02.jpg", "class_2/from_1.jpg"),
        ("class_2/img_03.jpg", "class_2/twice.jpg"),
        ("class_2/img_03.jpg", "class_2/thrice.jpg"),
        ("class_2/img_03.jpg", "class_0/four.jpg"),
    ]:
        shutil.copyfile(root / source, root / target)
    return root


@pytest.mark.parametrize("options", [{"folds": 3}, {"folds": 5, "seed": 3}, {"repeats": 4, "test_fraction": 0.3}])
def test_identical_files_never_straddle_a_split(copies: Path, caplog: pytest.LogCaptureFixture, options: dict):
    images = pooled_images(copies)
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        digests = content_groups(images)
    warned = [r.getMessage() for r in caplog.records if "byte-identical" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("Duplicates: 6 byte-identical file(s)")
    splits = build_splits(images.labels, shots=["1", "2", "all"], groups=digests, **options)
    for split in splits:
        sides = [{digests[i] for i in rows} for rows in (split.train, split.val, split.test)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), split.index
        assert sorted(np.concatenate([split.train, split.val, split.test]).tolist()) == list(range(len(images)))
        for level in ("1", "2"):  # K shots are K different images
            shots = [digests[i] for i in split.subsets[level]]
            assert len(set(shots)) == len(shots) == 3 * int(level)
        assert sorted(map(sorted, split.copies)) == sorted(
            sorted(i for i, d in enumerate(digests) if d == digest)
            for digest in set(digests)
            if digests.count(digest) > 1
        )
    if "folds" in options:  # every image is held out exactly once
        assert sorted(np.concatenate([s.test for s in splits]).tolist()) == list(range(len(images)))
    record = splits_record(images, splits)
    assert record["identical_files"] == 6 and len(record["copies"]) == 4
    assert {Path(p).name for group in record["copies"] for p in group} >= {"again.jpg", "from_0.jpg", "four.jpg"}


def test_folds_count_copies_once():
    labels = ["a"] * 8 + ["b"] * 6
    digests = ["w", "w", "x", "x", "y", "y", "z", "z", "p", "q", "r", "s", "t", "u"]
    assert len(build_splits(labels, folds=5)) == 5  # 8 files of class a ...
    with pytest.raises(GraftcvError, match=r"--folds 5 is more than the 4 images of class 'a' \(byte-identical"):
        build_splits(labels, folds=5, groups=digests)  # ... but 4 different images


def test_compare_keeps_identical_files_on_one_side(copies: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """Every fit compare makes, tuning runs included, trains, chooses and is scored on disjoint bytes."""
    spy = SpyFit()
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        result = compare(copies, strategies="prototype,partial", folds=3, tune="lr", out=tmp_path / "c", fit=spy)
    assert sum("byte-identical" in r.getMessage() for r in caplog.records) == 1  # warned once
    images = pooled_images(copies)
    digest_of = dict(zip(map(str, images.paths), content_groups(images), strict=True))
    assert len(spy.calls) == 3 * (1 + 3)
    for call in spy.calls:
        train, val, test = ({digest_of[p] for p in call[side]} for side in ("train", "val", "test"))
        assert not (train & val or train & test or val & test), call["out"]
    for evaluation in spy.evaluated:  # the chosen model's test fold
        split = _split_of(evaluation["out"])
        fits = [c for c in spy.calls if _split_of(c["out"]) == split]
        seen = {digest_of[p] for c in fits for p in c["train"] + c["val"]}
        assert not seen & {digest_of[p] for p in evaluation["test"]}
    assert json.loads((result.out_dir / "splits.json").read_text())["identical_files"] == 6
    assert json.loads((result.out_dir / "protocol.json").read_text())["protocol"]["identical_files"] == 6
