"""graftcv zeroshot: ESZSL where the answer is known, the attribute table's bad inputs, the command end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from graftcv.errors import GraftcvError
from graftcv.fewshot.zeroshot import read_attributes, zeroshot
from graftcv.heads.eszsl import choose_and_fit, fit_eszsl, mean_class_accuracy

TABLE = Path(__file__).resolve().parents[1] / "examples" / "attributes" / "pacs.csv"


def _synthetic(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Eight classes whose features are a fixed linear map of their attribute vectors, plus noise."""
    rng = np.random.default_rng(seed)
    attributes = rng.integers(0, 2, size=(8, 10)).astype(float)
    attributes[np.arange(8), np.arange(8)] = 1  # no two classes alike
    mapping = rng.normal(size=(10, 40))
    targets = np.repeat(np.arange(8), 30)
    features = attributes[targets] @ mapping + 0.3 * rng.normal(size=(240, 40))
    return features, targets, attributes


def test_eszsl_recognises_unseen_classes_from_their_attributes() -> None:
    features, targets, attributes = _synthetic()
    seen = targets < 6
    model = fit_eszsl(features[seen], targets[seen], attributes[:6])
    predicted = 6 + model.scores(features[~seen], attributes[6:]).argmax(1)
    assert mean_class_accuracy(predicted, targets[~seen]) > 0.9
    shuffled = attributes[6:][::-1]  # the wrong attribute rows for the unseen classes: the answer flips
    flipped = 6 + model.scores(features[~seen], shuffled).argmax(1)
    assert mean_class_accuracy(flipped, targets[~seen]) < 0.1


def test_hyper_parameters_are_chosen_on_seen_classes_only() -> None:
    features, targets, attributes = _synthetic(1)
    seen = targets < 6
    model = choose_and_fit(features[seen], targets[seen], attributes[:6])
    assert model.gamma in (0.01, 0.1, 1.0, 10.0, 100.0) and model.weights.shape == (40, 10)
    assert mean_class_accuracy(6 + model.scores(features[~seen], attributes[6:]).argmax(1), targets[~seen]) > 0.9


def test_the_shipped_table_describes_the_pacs_classes() -> None:
    names, columns, values = read_attributes(TABLE)
    assert names == ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
    assert len(columns) >= 15 and values.shape == (7, len(columns))
    assert len({tuple(row) for row in values}) == 7  # every class has its own description


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,a\ndog,1\n", "first row must be class"),
        ("class,a,b\ndog,1\n", "2 fields where the header has 3"),
        ("class,a\ndog,yes\n", "must be numbers"),
        ("class,a\ndog,1\ndog,0\n", "more than one row"),
    ],
)
def test_bad_tables_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(GraftcvError, match=message):
        read_attributes(tmp_path / "t.csv")


@pytest.fixture
def pacs_like(tmp_path: Path) -> Path:
    colours = {"dog": (200, 30, 30), "elephant": (30, 200, 30), "giraffe": (30, 30, 200), "guitar": (200, 200, 30),
               "horse": (200, 30, 200), "house": (30, 200, 200), "person": (120, 120, 120)}  # fmt: skip
    for name, colour in colours.items():
        for i in range(6):
            write_image(tmp_path / "data" / name / f"{i}.png", colour, seed=i, size=32)
    return tmp_path / "data"


def test_zeroshot_end_to_end(pacs_like: Path, tmp_path: Path) -> None:
    result = zeroshot(pacs_like, TABLE, "giraffe,guitar", model="resnet10t", size=32, out=tmp_path / "z",
                      progress=False, pretrained=False, cache=False)  # fmt: skip
    saved = json.loads((tmp_path / "z" / "zeroshot.json").read_text())
    assert saved["settings"]["unseen"] == ["giraffe", "guitar"] and saved["scores"]["chance"] == 0.5
    assert saved["scores"]["unseen_images"] == 12 and saved["scores"]["train_images"] + saved["scores"][
        "seen_test_images"] == 30  # fmt: skip
    generalized = result.scores["generalized"]
    assert 0 <= generalized["harmonic_mean"] <= min(generalized["seen_accuracy"], generalized["unseen_accuracy"]) * 2
    with pytest.raises(GraftcvError, match="--unseen takes classes of the data"):
        zeroshot(pacs_like, TABLE, "unicorn", model="resnet10t", size=32, out=tmp_path / "x", progress=False,
                 pretrained=False)  # fmt: skip
    shutil.copytree(pacs_like / "dog", pacs_like / "zebra")
    with pytest.raises(GraftcvError, match="no row for class 'zebra'"):
        zeroshot(pacs_like, TABLE, "giraffe", model="resnet10t", size=32, out=tmp_path / "y", progress=False,
                 pretrained=False)  # fmt: skip
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
