"""Tests for graftcv.evaluation: metrics against hand-computed values, edge cases; report files and tables."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.table import Table

from graftcv.cli.tables import report_table, summary_line
from graftcv.evaluation import classification_report, expected_calibration_error
from graftcv.rundir import write_evaluation

CLASSES3 = ["a", "b", "c"]


def one_hot_probs(pred: list[int], n_classes: int, conf: float) -> np.ndarray:
    """Probabilities with ``conf`` on the predicted class and the rest spread evenly."""
    probs = np.full((len(pred), n_classes), (1.0 - conf) / (n_classes - 1))
    probs[np.arange(len(pred)), pred] = conf
    return probs


@pytest.fixture
def small_case() -> tuple[np.ndarray, np.ndarray]:
    """3 classes, 6 samples: y_true = a a a b b c, y_pred = a b b b c c, confidence 0.6."""
    y_true = np.array([0, 0, 0, 1, 1, 2])
    probs = one_hot_probs([0, 1, 1, 1, 2, 2], 3, conf=0.6)
    return y_true, probs


def assert_plain_json(obj: object) -> None:
    """Recursively check that only plain python types (no numpy scalars) are used."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert type(key) is str
            assert_plain_json(value)
    elif isinstance(obj, list):
        for value in obj:
            assert_plain_json(value)
    else:
        assert type(obj) in (int, float, str), f"{obj!r} has type {type(obj)}"


def test_hand_computed_example(small_case: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, probs = small_case
    rep = classification_report(y_true, probs, CLASSES3)

    # Confusion (rows true, cols pred): a -> [1, 2, 0], b -> [0, 1, 1], c -> [0, 0, 1].
    assert rep["confusion_matrix"] == [[1, 2, 0], [0, 1, 1], [0, 0, 1]]
    assert rep["n"] == 6
    assert rep["accuracy"] == pytest.approx(3 / 6)
    # precision a=1/1, b=1/3, c=1/2; recall a=1/3, b=1/2, c=1/1.
    f1 = [2 * p * r / (p + r) for p, r in [(1, 1 / 3), (1 / 3, 1 / 2), (1 / 2, 1)]]
    assert f1 == pytest.approx([1 / 2, 2 / 5, 2 / 3])
    assert rep["macro_precision"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert rep["macro_recall"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert rep["macro_f1"] == pytest.approx(47 / 90)
    assert rep["weighted_f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6)
    assert rep["weighted_recall"] == pytest.approx(rep["accuracy"])
    assert rep["balanced_accuracy"] == pytest.approx(11 / 18)
    assert [row["f1"] for row in rep["per_class"]] == pytest.approx(f1)
    assert [row["support"] for row in rep["per_class"]] == [3, 2, 1]
    assert [row["class"] for row in rep["per_class"]] == CLASSES3
    # true-class probability is 0.6 for the 3 hits and 0.2 for the 3 misses.
    assert rep["log_loss"] == pytest.approx(-(3 * math.log(0.6) + 3 * math.log(0.2)) / 6)
    # every confidence is 0.6 and accuracy is 0.5.
    assert rep["ece"] == pytest.approx(0.1)
    assert rep["most_confused"] == [
        {"true": "a", "predicted": "b", "count": 2},
        {"true": "b", "predicted": "c", "count": 1},
    ]
    np.testing.assert_allclose(
        rep["confusion_matrix_normalized"], [[1 / 3, 2 / 3, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    )


def test_perfect_confident_predictions() -> None:
    y_true = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    rep = classification_report(y_true, one_hot_probs(y_true.tolist(), 4, conf=0.99), list("wxyz"))
    assert rep["accuracy"] == 1.0
    assert rep["macro_f1"] == 1.0
    assert rep["balanced_accuracy"] == 1.0
    assert rep["ece"] == pytest.approx(0.01)
    assert rep["most_confused"] == []
    assert rep["confusion_matrix"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]


def test_perfect_but_unconfident_predictions_are_miscalibrated() -> None:
    y_true = np.array([0, 1, 2, 0, 1, 2])
    rep = classification_report(y_true, one_hot_probs(y_true.tolist(), 3, conf=0.4), CLASSES3)
    assert rep["accuracy"] == 1.0
    assert rep["ece"] == pytest.approx(0.6)


def test_ece_known_miscalibration_binary() -> None:
    # Every prediction made with confidence 0.9, but only half are right -> ECE = |0.5 - 0.9| = 0.4.
    y_true = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.4)
    assert classification_report(y_true, probs, ["neg", "pos"])["ece"] == pytest.approx(0.4)


def test_ece_weights_bins_by_size() -> None:
    # Bin of 0.95 (2 samples, both right) and bin of 0.55 (2 samples, one right): 0.5*0.05 + 0.5*0.05.
    y_true = np.array([0, 0, 0, 1])
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.05)


def test_binary_case() -> None:
    y_true = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.4, 0.6], [0.6, 0.4]])
    rep = classification_report(y_true, probs, ["cat", "dog"], topk=(1, 3, 5))
    assert rep["confusion_matrix"] == [[1, 1], [1, 2]]
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["top1_accuracy"] == pytest.approx(rep["accuracy"])
    assert "top3_accuracy" not in rep and "top5_accuracy" not in rep
    # dog: precision 2/3, recall 2/3; cat: precision 1/2, recall 1/2.
    assert rep["per_class"][1]["f1"] == pytest.approx(2 / 3)
    assert rep["macro_f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert rep["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    expected_ll = -np.mean(np.log([0.8, 0.3, 0.9, 0.6, 0.4]))
    assert rep["log_loss"] == pytest.approx(expected_ll)
    assert rep["most_confused"] == [
        {"true": "cat", "predicted": "dog", "count": 1},
        {"true": "dog", "predicted": "cat", "count": 1},
    ]


def test_topk_skipped_when_k_not_below_num_classes(small_case: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, probs = small_case
    default = classification_report(y_true, probs, CLASSES3)
    assert not any(key.startswith("top") for key in default)

    rep = classification_report(y_true, probs, CLASSES3, topk=(1, 2, 3, 5))
    assert "top3_accuracy" not in rep and "top5_accuracy" not in rep
    assert rep["top1_accuracy"] == pytest.approx(rep["accuracy"])
    # Second choices are ties at 0.2; use untied scores to check top-2 by hand instead.
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    rep2 = classification_report(y, p, CLASSES3, topk=(2,))
    # sample 0: top2 {b, c} misses a; sample 1: {a, b} hits; sample 2: {a, b} misses c; sample 3 hits.
    assert rep2["top2_accuracy"] == pytest.approx(2 / 4)


def test_topk_on_many_classes() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 8))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(0, 8, size=50)
    rep = classification_report(y_true, probs, [f"c{i}" for i in range(8)])
    ranks = (-probs).argsort(axis=1)
    for k in (3, 5):
        hand = np.mean([y_true[i] in ranks[i, :k] for i in range(50)])
        assert rep[f"top{k}_accuracy"] == pytest.approx(hand)
    assert rep["accuracy"] <= rep["top3_accuracy"] <= rep["top5_accuracy"]


def test_absent_class_in_y_true() -> None:
    # Class "d" never occurs in y_true and is predicted once.
    y_true = np.array([0, 1, 2, 0, 1, 2])
    probs = one_hot_probs([0, 1, 2, 0, 1, 3], 4, conf=0.7)
    rep = classification_report(y_true, probs, ["a", "b", "c", "d"])
    assert rep["confusion_matrix"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert rep["confusion_matrix_normalized"][3] == [0.0, 0.0, 0.0, 0.0]
    assert not np.isnan(np.array(rep["confusion_matrix_normalized"])).any()
    d = rep["per_class"][3]
    assert d == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rep["most_confused"] == [{"true": "c", "predicted": "d", "count": 1}]
    assert math.isfinite(rep["log_loss"])
    json.dumps(rep)


def test_absent_and_never_predicted_class_does_not_drag_macro_down() -> None:
    y_true = np.array([0, 1, 2, 0, 1, 2])
    rep = classification_report(y_true, one_hot_probs(y_true.tolist(), 4, conf=0.9), list("abcd"))
    assert rep["macro_f1"] == 1.0
    assert rep["weighted_f1"] == 1.0
    assert rep["per_class"][3]["support"] == 0
    assert len(rep["confusion_matrix"]) == 4 and rep["confusion_matrix"][3] == [0, 0, 0, 0]


def test_most_confused_sorted_and_capped() -> None:
    # 6 classes, true class t is always predicted as (t + 1) % 6, repeated t + 1 times -> 6 distinct pairs;
    # plus extra off-diagonal noise to exceed the cap of 10.
    y_true: list[int] = []
    y_pred: list[int] = []
    for t in range(6):
        for q in range(6):
            if q == t:
                continue
            count = 20 - 3 * t if q == (t + 1) % 6 else 1
            y_true += [t] * count
            y_pred += [q] * count
    rep = classification_report(np.array(y_true), one_hot_probs(y_pred, 6, 0.5), [f"k{i}" for i in range(6)])
    pairs = rep["most_confused"]
    assert len(pairs) == 10
    counts = [pair["count"] for pair in pairs]
    assert counts == sorted(counts, reverse=True)
    assert counts[:6] == [20, 17, 14, 11, 8, 5]
    assert pairs[0] == {"true": "k0", "predicted": "k1", "count": 20}
    assert all(pair["true"] != pair["predicted"] for pair in pairs)


def test_report_is_plain_json(small_case: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, probs = small_case
    rep = classification_report(y_true, probs.astype(np.float32), CLASSES3, topk=(2,))
    assert_plain_json(rep)
    assert json.loads(json.dumps(rep)) == rep


def test_log_loss_handles_zero_probabilities() -> None:
    y_true = np.array([0, 1])
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    rep = classification_report(y_true, probs, ["a", "b"])
    assert math.isfinite(rep["log_loss"])
    assert rep["log_loss"] > 10  # one certain mistake costs about -log(1e-15) / 2


def test_invalid_inputs_raise() -> None:
    probs = one_hot_probs([0, 1], 3, conf=0.8)
    with pytest.raises(ValueError):
        classification_report(np.array([0, 1]), probs, ["a", "b"])
    with pytest.raises(ValueError):
        classification_report(np.array([0, 3]), probs, CLASSES3)
    with pytest.raises(ValueError):
        classification_report(np.array([0, 1, 2]), probs, CLASSES3)


def test_report_table_and_summary(small_case: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, probs = small_case
    rep = classification_report(y_true, probs, CLASSES3)
    table = report_table(rep, title="Val")
    assert isinstance(table, Table)
    assert table.row_count == len(CLASSES3) + 2
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(table)
    text = console.file.getvalue()
    assert "Val" in text and "macro avg" in text and "weighted avg" in text
    assert f"{47 / 90:.3f}" in text

    line = summary_line(rep)
    assert line == (
        f"accuracy 0.500 · balanced {11 / 18:.3f} · macro-F1 {47 / 90:.3f} · "
        f"log-loss {rep['log_loss']:.3f} · ECE 0.100 (n=6)"
    )


def test_write_evaluation_roundtrip(tmp_path: Path, small_case: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, probs = small_case
    rep = classification_report(y_true, probs, CLASSES3)
    out_dir = tmp_path / "nested" / "eval"
    paths = write_evaluation(rep, out_dir, prefix="val_")

    assert set(paths) == {"json", "per_class", "confusion"}
    assert paths["json"] == out_dir / "val_metrics.json"
    assert paths["per_class"] == out_dir / "val_per_class.csv"
    assert paths["confusion"] == out_dir / "val_confusion_matrix.csv"
    assert all(path.is_file() for path in paths.values())

    assert json.loads(paths["json"].read_text(encoding="utf-8")) == rep

    with paths["per_class"].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["class"] for row in rows] == CLASSES3
    assert list(rows[0]) == ["class", "precision", "recall", "f1", "support"]
    assert [int(row["support"]) for row in rows] == [3, 2, 1]
    assert [float(row["f1"]) for row in rows] == pytest.approx([1 / 2, 2 / 5, 2 / 3])

    with paths["confusion"].open(newline="", encoding="utf-8") as fh:
        grid = list(csv.reader(fh))
    assert grid[0] == ["true\\pred", *CLASSES3]
    assert [row[0] for row in grid[1:]] == CLASSES3
    assert [[int(v) for v in row[1:]] for row in grid[1:]] == rep["confusion_matrix"]


def test_write_evaluation_without_prefix(tmp_path: Path, small_case: tuple[np.ndarray, np.ndarray]) -> None:
    rep = classification_report(*small_case, CLASSES3)
    paths = write_evaluation(rep, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_matrix.csv",
        "metrics.json",
        "per_class.csv",
    ]
    assert paths["json"].parent == tmp_path
