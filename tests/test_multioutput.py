"""Several labels per image, end to end: discovery and its bad inputs, the loss, the linear-probe head, fit →
artifact → predict / evaluate, thresholds, ONNX parity, CAMs and the CLI."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graftcv
import graftcv.cli
from graftcv.data.multi_discovery import discover_multi, is_multi_source
from graftcv.data.tasks import MULTI, SINGLE, Layout, Task
from graftcv.errors import GraftcvError
from graftcv.training.objectives import OutputsLoss, parse_task_weights

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 220)}
TINY = dict(model="resnet10t", pretrained=False, size=32, epochs=1, head_epochs=1, batch_size=8, num_workers=0,
            progress=False)  # fmt: skip


def stripes(root: Path, n: int = 48, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Images with a vertical stripe of each colour they are labelled with; returns (file name, labels)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        present = [c for j, c in enumerate(COLOURS) if rng.random() < 0.45 or i % 3 == j]
        pixels = np.full((40, 48, 3), 128, np.int16)
        for j, colour in enumerate(COLOURS):
            if colour in present:
                pixels[:, j * 16 : (j + 1) * 16] = COLOURS[colour]
        pixels = np.clip(pixels + rng.integers(-20, 21, pixels.shape), 0, 255).astype(np.uint8)
        name = f"img_{seed}_{i:03d}.png"
        Image.fromarray(pixels).save(root / name)
        rows.append((name, present))
    return rows


def main_exit(monkeypatch, argv: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", argv)
    try:
        graftcv.cli.main()
    except SystemExit as done:
        return done.code or 0
    return 0


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    rows = stripes(tmp_path / "images")
    return write_csv(tmp_path / "images" / "labels.csv", ["path", "labels"], [[n, ";".join(p)] for n, p in rows])


@pytest.fixture
def two_tasks(tmp_path: Path) -> Path:
    rows = stripes(tmp_path / "images", seed=1)
    body = [[n, "many" if len(p) > 1 else "one", ";".join(p) + ";"] for n, p in rows]
    return write_csv(tmp_path / "images" / "tasks.csv", ["path", "count", "colours"], body)


# --- data ------------------------------------------------------------------------------------------------


def test_label_sets_are_split_with_every_label_on_both_sides(labelled: Path) -> None:
    assert is_multi_source(labelled) and not is_multi_source(labelled.parent)
    splits = discover_multi(labelled, val_fraction=0.25, seed=3)
    assert splits.classes == ["blue", "green", "red"] and splits.tasks.kind == "multi-label"
    assert len(splits.train) + len(splits.val) == 48 and set(splits.train.paths).isdisjoint(splits.val.paths)
    train, val = splits.train.targets(splits.classes), splits.val.targets(splits.classes)
    assert train.shape == (len(splits.train), 3) and set(np.unique(train)) <= {0.0, 1.0}
    assert (val.sum(0) > 0).all() and (train.sum(0) > 0).all()  # (shares: tests/test_multilabel.py)


def test_tasks_from_columns(two_tasks: Path) -> None:
    splits = discover_multi(two_tasks)
    kinds = [(t.name, t.kind, t.classes) for t in splits.tasks.tasks]
    assert kinds == [("count", SINGLE, ("many", "one")), ("colours", MULTI, ("blue", "green", "red"))]
    assert splits.classes == ["count:many", "count:one", "colours:blue", "colours:green", "colours:red"]
    rows = splits.train.targets(splits.classes)
    assert (rows[:, :2].sum(1) == 1).all()  # a single-label task: exactly one class per image


@pytest.mark.parametrize(
    ("val_text", "fragment"),
    [
        ("path,labels,extra\n{0},red,x\n", "label column 'extra'"),
        ("path,labels\n{0},purple\n", "label 'purple'"),
        ("path,labels\n", "has no images"),
    ],
)
def test_bad_validation_files(labelled: Path, tmp_path: Path, val_text: str, fragment: str) -> None:
    val = tmp_path / "val.csv"
    val.write_text(val_text.format(labelled.parent / "img_0_000.png"))
    with pytest.raises(GraftcvError, match=fragment):
        discover_multi(labelled, val=val)


def test_a_label_without_training_images_is_refused(tmp_path: Path) -> None:
    rows = stripes(tmp_path / "images", n=6)
    body = [[n, "lonely" if i == 0 else ";".join(p)] for i, (n, p) in enumerate(rows)]
    source = write_csv(tmp_path / "images" / "labels.csv", ["path", "labels"], body)
    splits = discover_multi(source, val_fraction=0.5)  # 'lonely' has one image: training or validation gets it
    if "lonely" in splits.train.counts():
        assert splits.train.counts()["lonely"] == 1
    (tmp_path / "images" / "img_0_000.png").unlink()
    with pytest.raises(GraftcvError, match="'lonely' has no usable training image"):
        discover_multi(source)


# --- the layout and the loss -----------------------------------------------------------------------------


def test_layout_targets_decisions_and_meta() -> None:
    layout = Layout((Task("count", SINGLE, ("many", "one")), Task("colours", MULTI, ("blue", "red"), (0.3, 0.7))))
    assert layout.outputs == ["count:many", "count:one", "colours:blue", "colours:red"]
    assert layout.targets(["count:one;colours:red"]).tolist() == [[0, 1, 0, 1]]
    (decided,) = layout.decide(np.array([[0.2, 0.8, 0.4, 0.6]]))
    assert decided["count"] == {"class": "one", "probability": 0.8}
    assert [d["label"] for d in decided["colours"]] == ["blue"]  # 0.4 ≥ 0.3, 0.6 < 0.7
    assert Layout.from_meta(layout.as_meta()) == layout
    with pytest.raises(GraftcvError, match="malformed"):
        Layout.from_meta([{"name": "x", "kind": "multi", "classes": ["a"], "thresholds": [2.0]}])


def test_the_loss_is_each_tasks_own() -> None:
    layout = Layout((Task("a", SINGLE, ("x", "y", "z")), Task("b", MULTI, ("p", "q"))))
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.zeros(6, 5)
    targets[torch.arange(6), torch.arange(6) % 3] = 1
    targets[:, 3] = torch.tensor([1.0, 0, 1, 0, 1, 1])
    ce = torch.nn.functional.cross_entropy(logits[:, :3], targets[:, :3].argmax(1))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 3:], targets[:, 3:])
    assert torch.allclose(OutputsLoss(layout)(logits, targets), ce + bce)
    fixed = OutputsLoss(layout, parse_task_weights("3,1", 2))(logits, targets)
    assert torch.allclose(fixed, (3 * ce + bce) / 4 * 2)
    learned = OutputsLoss(layout, "uncertainty")
    learned(logits, targets).backward()
    assert learned.log_vars.grad is not None and learned.log_vars.grad.abs().sum() > 0
    probs = OutputsLoss(layout).activate(logits)
    assert torch.allclose(probs[:, :3].sum(1), torch.ones(6)) and torch.allclose(probs[:, 3:], logits[:, 3:].sigmoid())
    assert OutputsLoss(layout, multilabel_loss="asl")(logits, targets) > 0
    with pytest.raises(GraftcvError, match="2 non-negative weights"):
        parse_task_weights("1,2,3", 2)


def test_linear_probe_head_on_features_with_a_known_answer() -> None:
    """Feature 0 says label p, feature 1 label q, feature 2 (its sign) the single-label task's class."""
    from graftcv.heads.multi import fit_outputs_probe

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (200, 3))
    features = rng.normal(0, 0.3, (200, 8)) + np.pad(truth * 2.0 - 1.0, ((0, 0), (0, 5)))
    layout = Layout((Task("a", SINGLE, ("no", "yes")), Task("b", MULTI, ("p", "q"))))
    targets = np.column_stack([1 - truth[:, 2], truth[:, 2], truth[:, 0], truth[:, 1]])
    head = fit_outputs_probe(features, targets, layout)
    probs = head(torch.from_numpy(features.astype(np.float32))).numpy()
    assert np.allclose(probs[:, :2].sum(1), 1, atol=1e-5)
    assert ((probs[:, 2:] >= 0.5) == targets[:, 2:].astype(bool)).mean() > 0.97
    assert (probs[:, :2].argmax(1) == truth[:, 2]).mean() > 0.97
    with pytest.raises(GraftcvError, match="logreg, svm"):
        fit_outputs_probe(features, targets, layout, kind="rf")


# --- fit, artifact, predict, evaluate, export ------------------------------------------------------------


def test_linear_probe_multilabel_round_trip(labelled: Path, tmp_path: Path) -> None:
    run = graftcv.fit(labelled, tmp_path / "run", strategy="linear-probe", **TINY)
    assert run.summary["kind"] == "multi-label" and run.summary["val_map_macro"] > 0.9
    model = graftcv.load(run.out_dir / "model")
    (task,) = model.meta["tasks"]
    assert task["kind"] == "multi" and len(task["thresholds"]) == 3
    rows = list(csv.DictReader((run.out_dir / "val_predictions.csv").open()))
    assert rows and set(rows[0]) == {"path", "labels", "predicted", "blue", "green", "red"}
    found = model.predict([str(labelled.parent / "img_0_000.png")])[0]
    assert set(found) == {"path", "labels", "probabilities"} and set(found["probabilities"]) == set(model.classes)
    chosen = {item["label"] for item in found["labels"]}
    cut = dict(zip(task["classes"], task["thresholds"], strict=True))
    assert chosen == {k for k, p in found["probabilities"].items() if p >= cut[k]}
    report = model.evaluate(labelled)
    assert report["kind"] == "multi-label" and {"map_macro", "f1_micro", "hamming_loss"} <= set(report)
    assert (run.out_dir / "val_per_label.csv").is_file()
    with pytest.raises(GraftcvError, match="one label per image"):
        graftcv.add_class(run.out_dir / "model", labelled.parent)


def test_multitask_finetune_with_uncertainty_weights_and_onnx_parity(two_tasks: Path, tmp_path: Path) -> None:
    from graftcv.export import export_onnx

    run = graftcv.fit(two_tasks, tmp_path / "run", strategy="finetune", task_weights="uncertainty", **TINY)
    assert run.summary["kind"] == "multi-task"
    assert {"val_count_accuracy", "val_colours_map_macro", "val_mean_task_score"} <= set(run.summary)
    report = export_onnx(run.out_dir / "model", images=[str(two_tasks.parent)])
    assert report.max_abs_prob_diff < 1e-4
    torch_model, onnx_model = graftcv.load(run.out_dir / "model"), graftcv.load(run.out_dir / "model", runtime="onnx")
    image = str(two_tasks.parent / "img_1_000.png")
    a, b = torch_model.predict([image])[0], onnx_model.predict([image])[0]
    assert a["tasks"]["count"]["class"] == b["tasks"]["count"]["class"]
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)
    probs = np.array(list(a["probabilities"].values()))
    assert abs(probs[:2].sum() - 1) < 1e-5  # the single-label task is a softmax, the colours are sigmoids


def test_multilabel_probe_exports_and_explains_a_label(labelled: Path, tmp_path: Path) -> None:
    from graftcv.export import export_onnx

    run = graftcv.fit(labelled, tmp_path / "run", strategy="linear-probe", **TINY)
    report = export_onnx(run.out_dir / "model", images=[str(labelled.parent)])
    assert report.max_abs_prob_diff < 1e-4 and report.max_abs_logit_diff < 1e-4
    from graftcv.lite import LitePredictor

    lite = LitePredictor.open(run.out_dir / "model").predict([str(labelled.parent / "img_0_001.png")])[0]
    full = graftcv.load(run.out_dir / "model").predict([str(labelled.parent / "img_0_001.png")])[0]
    assert [x["label"] for x in lite["labels"]] == [x["label"] for x in full["labels"]]
    (cam,) = graftcv.load(run.out_dir / "model").explain([str(labelled.parent / "img_0_001.png")], target="red")
    assert cam.target == "red" and cam.cam.shape == (32, 32) and 0 <= cam.cam.min() <= cam.cam.max() <= 1


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"strategy": "prototype"}, "use linear-probe"),
        ({"mixup": 0.2}, "--mixup and --cutmix"),
        ({"balance": "sampler"}, "--balance weights"),
        ({"task_weights": "1,2"}, "1 non-negative weights"),
    ],
)
def test_what_several_labels_rule_out(labelled: Path, tmp_path: Path, settings: dict, fragment: str) -> None:
    with pytest.raises(GraftcvError, match=fragment):
        graftcv.fit(labelled, tmp_path / "run", **(TINY | settings))


def test_zero_one_columns_train_and_the_cli_reports_them(tmp_path: Path, monkeypatch, capsys, restore_logging) -> None:
    rows = stripes(tmp_path / "images")
    body = [[n, *(int(c in p) for c in COLOURS)] for n, p in rows]
    source = write_csv(tmp_path / "images" / "cols.csv", ["path", *COLOURS], body)
    args = ["graftcv", "train", str(source), "--multi-label", "--strategy", "linear-probe", "--model", "resnet10t",
            "--no-pretrained", "--size", "32", "--workers", "0", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main_exit(monkeypatch, args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["classes"] == ["red", "green", "blue"] and "val_map_macro" in summary
    assert "Labels" in (tmp_path / "run" / "report.html").read_text()
    assert main_exit(monkeypatch, ["graftcv", "evaluate", str(tmp_path / "run" / "model"), str(source)]) == 0
    assert "map macro" in capsys.readouterr().out
    val = tmp_path / "val.csv"
    write_csv(val, ["path", "red", "green", "violet"], [[str(tmp_path / "images" / rows[0][0]), 1, 0, 0]])
    capsys.readouterr()
    assert main_exit(monkeypatch, [*args[:-1], str(tmp_path / "run2"), "--val", str(val)]) == 2
    assert "violet" in capsys.readouterr().err
    assert not (tmp_path / "run2" / "summary.json").exists()


def test_a_multilabel_model_served_and_fuzzed(labelled: Path, tmp_path: Path) -> None:
    """/predict gives labels and probabilities, /explain takes a label, /metadata the tasks; fuzzed uploads
    get 2xx or 4xx, never 5xx."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings

    from graftcv.serve import Limits, ServeSettings, create_app

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from fuzz_serve import judge, seed_images, send, uploads

    run = graftcv.fit(labelled, tmp_path / "run", strategy="linear-probe", **TINY)
    limits = Limits(max_files=4, max_file_bytes=64 * 1024, max_pixels=1_000_000, max_body_bytes=300 * 1024)
    app = create_app(ServeSettings(str(run.out_dir / "model"), runtime="torch", limits=limits, threads=1))
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/metadata").json()["tasks"][0]["kind"] == "multi"
    image = (labelled.parent / "img_0_000.png").read_bytes()
    response = client.post("/predict", files=[("files", ("a.png", image, "image/png"))])
    assert response.status_code == 200, response.text
    (got,) = response.json()["predictions"]
    want = graftcv.load(run.out_dir / "model").predict([str(labelled.parent / "img_0_000.png")])[0]
    assert [x["label"] for x in got["labels"]] == [x["label"] for x in want["labels"]]
    assert got["probabilities"].keys() == want["probabilities"].keys()
    explained = client.post("/explain", files={"file": ("a.png", image, "image/png")}, params={"target": "red"})
    assert explained.status_code == 200 and explained.headers["content-type"] == "image/png"
    assert (
        client.post("/explain", files={"file": ("a.png", image, "image/png")}, params={"target": "x"}).status_code
        == 400
    )

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request=uploads(seed_images(side=40), ["red", "green", "blue"], limits.max_files,
                           oversize=limits.max_file_bytes))  # fmt: skip
    def fuzz(request) -> None:
        answer = send(client, request)
        assert judge(answer) in ("2xx", "4xx"), (answer.status_code, answer.text[:300])

    fuzz()


# --- compare ---------------------------------------------------------------------------------------------


def test_compare_folds_are_iteratively_stratified_on_label_sets() -> None:
    from graftcv.compare import build_splits

    rng = np.random.default_rng(0)
    targets = (rng.random((60, 4)) < [0.5, 0.3, 0.15, 0.08]).astype(np.float32)
    targets[np.arange(4), np.arange(4)] = 1  # every label present somewhere
    labels = [";".join(str(j) for j in np.flatnonzero(row)) for row in targets]
    splits = build_splits(labels, folds=3, seed=0, targets=targets)
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(60))  # every image held out exactly once
    for split in splits:
        assert not set(split.train) & set(split.test) and not set(split.val) & set(split.test)
        share = targets[split.test].mean(0)
        assert np.all(np.abs(share - targets.mean(0)) < 0.12)  # each label's share kept in every fold
    with pytest.raises(GraftcvError, match="with several labels per image"):
        build_splits(labels, folds=3, shots=["2", "all"], targets=targets)


def test_compare_ranks_multilabel_models_by_map(labelled: Path, tmp_path: Path) -> None:
    from graftcv.compare import compare

    settings = {k: v for k, v in TINY.items() if k not in ("progress",)}
    result = compare(labelled, strategies="prototype,linear-probe,scratch", folds=2, out=tmp_path / "cmp",
                     scratch_epochs=1, **settings)  # fmt: skip
    assert result.scores[0] == "test_map_macro" and result.protocol["headline"] == "test_map_macro"
    assert {row["strategy"] for row in result.rows} == {"linear-probe", "scratch"}  # prototype left out
    for row in result.rows:
        assert 0.0 <= row["test_map_macro"] <= 1.0 and 0.0 <= row["val_score"] <= 1.0
    assert result.verdicts and result.verdicts[0]["metric"] == "test_map_macro"
    assert "mAP (macro)" in result.verdicts[0]["sentence"]
    header = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0]
    assert "test_map_macro_mean" in header and "test_accuracy_mean" not in header
    assert "mAP (macro)" in (tmp_path / "cmp" / "compare.html").read_text()


def test_compare_of_several_tasks_scores_each_task(two_tasks: Path, tmp_path: Path) -> None:
    from graftcv.compare import compare

    settings = {k: v for k, v in TINY.items() if k not in ("progress",)}
    result = compare(two_tasks, strategies="linear-probe", folds=2, out=tmp_path / "cmp", **settings)
    assert result.scores[:3] == ("test_mean_task_score", "test_count_accuracy", "test_count_macro_f1")
    (entry,) = result.table
    row = result.rows[0]
    assert row["test_mean_task_score"] == pytest.approx(
        (row["test_count_accuracy"] + row["test_colours_map_macro"]) / 2
    )
    assert entry["n"] == 2 and "test_colours_map_macro_mean" in entry
