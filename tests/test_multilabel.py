"""Multi-label foundations: the CSV formats and their bad inputs, iterative stratification, thresholds, and the
metrics against scikit-learn on known inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, hamming_loss

from graftcv.data.multilabel import read_multilabel_csv, read_multitask_csv, stratified_split
from graftcv.errors import GraftcvError
from graftcv.evaluation.multilabel import choose_thresholds, multilabel_report


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "labels.csv").write_text(text)
    return tmp_path / "labels.csv"


def test_label_sets_with_an_empty_field_for_none(tmp_path: Path) -> None:
    found = read_multilabel_csv(_write(tmp_path, "path,labels\na.jpg,forest;river\nb.jpg,\nc.jpg,river\n"))
    assert found.labels == ["forest", "river"]
    assert found.targets.tolist() == [[1, 1], [0, 0], [0, 1]]
    assert found.paths[0] == tmp_path / "a.jpg"  # relative to the CSV


def test_zero_one_columns(tmp_path: Path) -> None:
    found = read_multilabel_csv(_write(tmp_path, "path,cat,dog\na.jpg,1,0\nb.jpg,1,1\n"), zero_one=True)
    assert found.labels == ["cat", "dog"] and found.targets.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(GraftcvError, match="holds 0 or 1"):
        read_multilabel_csv(_write(tmp_path, "path,cat\na.jpg,2\n"), zero_one=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no images"),
        ("path,labels\n", "has no images"),
        ("file,labels\na.jpg,x\n", "first row must be path"),
        ("path,labels\na.jpg,x,y\n", "3 fields where the header has 2"),
        ("path,labels\na.jpg,\n", "no image has a label"),
        ("path,a,b\na.jpg,x,y\n", "several label columns are tasks"),
    ],
)
def test_bad_label_files_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(GraftcvError, match=message):
        read_multilabel_csv(_write(tmp_path, text))


def test_tasks_by_column(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, "path,species,condition\na.jpg,oak,healthy;dry\nb.jpg,pine,sick\n")
    paths, tasks = read_multitask_csv(csv_path)
    assert len(paths) == 2 and tasks["species"] == ["oak", "pine"]
    assert tasks["condition"] == [{"healthy", "dry"}, {"sick"}]  # a ';' makes the task multi-label
    with pytest.raises(GraftcvError, match="no label column 'colour'"):
        read_multitask_csv(csv_path, ["species", "colour"])
    with pytest.raises(GraftcvError, match="images with no label"):
        read_multitask_csv(_write(tmp_path, "path,species\na.jpg,\nb.jpg,oak\n"))


def test_iterative_stratification_keeps_rare_labels_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 6)) < [0.5, 0.3, 0.1, 0.05, 0.04, 0.03]).astype(np.uint8)
    kept, held = stratified_split(targets, 0.2, seed=1)
    assert len(held) == 60 and not set(kept) & set(held) and len(kept) + len(held) == 300
    share = targets[held].sum(0) / np.maximum(targets.sum(0), 1)
    assert np.all(np.abs(share - 0.2) < 0.08)  # every label, the rare ones too, close to its 20%
    again = stratified_split(targets, 0.2, seed=1)
    assert (again[1] == held).all()


def test_thresholds_maximise_validation_f1() -> None:
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    probs = np.array([[0.3, 0.1], [0.35, 0.2], [0.1, 0.3], [0.2, 0.9]])
    chosen = choose_thresholds(truth, probs)
    assert chosen[0] == pytest.approx(0.3)  # label 0 positives sit at 0.3-0.35: 0.5 would miss both
    assert 0.3 < chosen[1] <= 0.9  # any cut between 0.3 and 0.9 is perfect; the nearest to 0.5 is kept
    assert chosen[1] == pytest.approx(0.5)
    assert choose_thresholds(np.zeros((3, 1)), np.random.default_rng(0).random((3, 1)))[0] == 0.5


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = (rng.random((50, 4)) < 0.4).astype(int)
    truth[:, 3] = 0  # a label with no positive image: left out of the macro mAP
    probs = np.clip(truth * 0.5 + rng.random((50, 4)) * 0.6, 0, 1)
    report = multilabel_report(truth, probs, ["a", "b", "c", "d"])
    predicted = (probs >= 0.5).astype(int)
    assert report["f1_micro"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert report["hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
    aps = [average_precision_score(truth[:, j], probs[:, j]) for j in range(3)]
    assert report["map_macro"] == pytest.approx(np.mean(aps))
    assert report["map_micro"] == pytest.approx(average_precision_score(truth, probs, average="micro"))
    assert np.isnan(report["per_label"][3]["ap"]) and report["per_label"][3]["support"] == 0
    assert report["subset_accuracy"] == pytest.approx(np.mean((predicted == truth).all(1)))
