"""graftcv fewshot: episode sampling, support/query separation, the methods on features where the answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graftcv.errors import GraftcvError
from graftcv.fewshot import FEWSHOT_METHODS, fewshot, sample_episodes

LABELS = np.repeat(np.arange(8), 25)  # 8 classes of 25 images


def test_episodes_have_the_asked_shape_and_never_show_a_query_in_the_support() -> None:
    drawn = sample_episodes(LABELS, ways=5, shots=5, queries=15, episodes=200, seed=3)
    assert len(drawn) == 200
    for episode in drawn:
        assert len(set(episode.classes)) == 5 and len(episode.support) == 25 and len(episode.query) == 75
        assert not set(episode.support) & set(episode.query)
        assert len(set(episode.query)) == 75 and len(set(episode.support)) == 25
        assert (LABELS[episode.support] == np.array(episode.classes)[episode.support_labels]).all()
        assert (LABELS[episode.query] == np.array(episode.classes)[episode.query_labels]).all()
    assert len({e.classes for e in drawn}) > 20  # classes are drawn per episode


def test_the_seed_fixes_the_episodes() -> None:
    first, again = (sample_episodes(LABELS, 5, 1, 15, 20, seed=7) for _ in range(2))
    other = sample_episodes(LABELS, 5, 1, 15, 20, seed=8)
    assert all((a.support == b.support).all() and (a.query == b.query).all() for a, b in zip(first, again, strict=True))
    assert any((a.support != b.support).any() for a, b in zip(first, other, strict=True))


def test_impossible_episodes_are_one_sentence() -> None:
    with pytest.raises(GraftcvError, match="--ways 9 needs 9 classes; the data has 8"):
        sample_episodes(LABELS, 9, 1, 15, 10)
    with pytest.raises(GraftcvError, match="needs 30 images in every class"):
        sample_episodes(LABELS, 5, 10, 20, 10, names=[f"c{i}" for i in range(8)])


@pytest.mark.parametrize("name", list(FEWSHOT_METHODS))
def test_every_method_separates_well_separated_classes(name: str) -> None:
    """Five classes around far-apart centres in 32 dimensions: every method should be near perfect."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 32)) * 4
    support_labels, query_labels = np.repeat(np.arange(5), 3), np.repeat(np.arange(5), 10)
    support = centres[support_labels] + rng.normal(size=(15, 32))
    query = centres[query_labels] + rng.normal(size=(50, 32))
    scores = FEWSHOT_METHODS[name].scores(support, support_labels, query)
    assert scores.shape == (50, 5)
    assert (scores.argmax(1) == query_labels).mean() >= 0.95


def test_transductive_methods_are_marked() -> None:
    assert {n for n, m in FEWSHOT_METHODS.items() if m.transductive} == {"bd-cspn", "tim"}


def test_fewshot_end_to_end_on_tiny_images(make_folder, tmp_path: Path) -> None:
    data = make_folder(classes=4, per_class=8)
    result = fewshot(data, ways=3, shots="1,2", queries=4, episodes=12, methods="prototype,linear-probe,tim",
                     model="resnet10t", size=32, weights=None, out=tmp_path / "fs", progress=False,
                     pretrained=False)  # fmt: skip
    assert [(r["shots"], r["method"]) for r in result.rows] == [
        (k, m) for k in (1, 2) for m in ("prototype", "linear-probe", "tim")
    ]
    assert all(0 <= r["accuracy"] <= 1 and r["episodes"] == 12 for r in result.rows)
    saved = json.loads((tmp_path / "fs" / "fewshot.json").read_text())
    assert saved["settings"]["ways"] == 3 and len(saved["rows"]) == 6
    assert "(transductive)" in (tmp_path / "fs" / "fewshot.md").read_text()


@pytest.mark.parametrize(
    ("strategy", "how"), [("prototype", "prototype centroid"), ("linear-probe", "imprinted weights")]
)
def test_add_class_round_trip(make_folder, tmp_path: Path, tiny: dict, strategy: str, how: str) -> None:
    """A model on three colours takes a fourth from its images: saved pickle-free, recorded, predicted."""
    import graftcv

    data = make_folder(classes=4, per_class=6)
    new = tmp_path / "violet"
    (data / "class_3").rename(new)
    run = graftcv.fit(data, out=tmp_path / "run", strategy=strategy, **(tiny | {"epochs": None}))
    model_dir = run.out_dir / "model"
    record = graftcv.add_class(model_dir, new, out=tmp_path / "more")
    assert record["class"] == "violet" and record["images"] == 6 and record["method"] == how
    model = graftcv.load(tmp_path / "more")
    assert model.classes == ["class_0", "class_1", "class_2", "violet"]
    assert model.meta["added_classes"][0]["images"] == 6
    probs, _ = model.predict_proba(sorted(str(p) for p in new.iterdir()))
    assert probs.shape == (6, 4) and (probs.argmax(1) == 3).mean() >= 0.8
    assert graftcv.load(model_dir).classes == ["class_0", "class_1", "class_2"]  # --out left the original alone
    with pytest.raises(GraftcvError, match="already has a class 'violet'"):
        graftcv.add_class(tmp_path / "more", new)


def test_add_class_refuses_a_fine_tuned_network(make_folder, tmp_path: Path, tiny: dict) -> None:
    import graftcv

    run = graftcv.fit(make_folder(classes=2, per_class=6), out=tmp_path / "run", **tiny)
    extra = make_folder("extra", classes=1, per_class=3, seed=4) / "class_0"
    with pytest.raises(GraftcvError, match="needs training again"):
        graftcv.add_class(run.out_dir / "model", extra)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fewshot", "{data}", "--methods", "prototype,magic"], "Unknown few-shot method 'magic'"),
        (["fewshot", "{data}", "--shots", "1,x"], "--shots takes comma-separated whole numbers"),
        (["fewshot", "{data}", "--ways", "7"], "--ways 7 needs 7 classes; the data has 4"),
        (["fewshot", "{data}", "--ways", "3", "--shots", "5", "--queries", "15"], "needs 20 images in every class"),
        (["add-class", "{tmp}/nowhere", "{data}/class_0"], "nowhere"),
        (["zeroshot", "{data}", "--attributes", "{tmp}/none.csv", "--unseen", "class_0"], "does not exist"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(make_folder, tmp_path, monkeypatch, capsys, restore_logging, args,
                                               message) -> None:  # fmt: skip
    import sys

    import graftcv.cli

    data = make_folder(classes=4, per_class=8)
    argv = [a.format(data=data, tmp=tmp_path) for a in args]
    monkeypatch.setattr(sys, "argv", ["graftcv", *argv])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())
    assert done.value.code == 2 and message in output and "Traceback" not in output
