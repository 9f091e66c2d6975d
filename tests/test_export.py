"""ONNX export: model.onnx beside graftcv.json, dynamic batch, parity with PyTorch, run by load/predict/serve."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest
from conftest import TINY, write_class_folders

import graftcv
import graftcv.cli
from graftcv import GraftcvError
from graftcv.export import export_onnx
from graftcv.runtime import ONNX_FILE, open_onnx

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fine-tuned classifier and two probes (logistic regression; a random forest's trees), each exported
    once: the classifier with the default exporter, the probes with the faster TorchScript one."""
    base = tmp_path_factory.mktemp("export")
    data = write_class_folders(base / "data", classes=3, per_class=6, size=48)
    models, reports = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        for name, settings, exporter in [
            ("head", {"strategy": "head"}, "auto"),
            ("logreg", {"strategy": "linear-probe", "head": "logreg"}, "torchscript"),
            ("rf", {"strategy": "linear-probe", "head": "rf"}, "torchscript"),
        ]:
            run = graftcv.fit(data, out=base / name, **settings, **TINY)
            models[name] = run.out_dir / "model"
            reports[name] = export_onnx(models[name], images=[data], exporter=exporter)
    return {"data": data, "models": models, "reports": reports, "images": sorted(data.rglob("*.jpg"))[::2]}


def run_main(argv: list, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["graftcv", *map(str, argv)])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    return done.value.code or 0


@pytest.mark.parametrize("name", ["head", "logreg", "rf"])
def test_parity_on_real_images_is_recorded(exported, name):
    report = exported["reports"][name]
    assert report.real_images == len(list(exported["data"].rglob("*.jpg")))
    assert report.max_abs_logit_diff <= 1e-4 and report.max_abs_prob_diff <= 1e-4
    assert report.top1_agreement == 1.0 and report.top1_mismatches_real == 0
    meta = json.loads((exported["models"][name] / "graftcv.json").read_text())
    onnx = meta["onnx"]
    assert onnx["file"] == ONNX_FILE and len(onnx["sha256"]) == 64
    assert onnx["parity"]["max_abs_logit_diff"] == report.max_abs_logit_diff
    assert onnx["parity"]["real_images"] == report.real_images
    assert (exported["models"][name] / ONNX_FILE).is_file()


@pytest.mark.parametrize("name", ["head", "logreg", "rf"])
def test_onnx_model_has_a_dynamic_batch(exported, name):
    runner, meta = open_onnx(exported["models"][name])
    size = meta["data_config"]["input_size"]
    for batch in (1, 3, 17):
        logits, probs = runner.outputs(np.random.default_rng(batch).standard_normal((batch, *size), dtype=np.float32))
        assert logits.shape == probs.shape == (batch, len(meta["classes"]))
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["head", "logreg", "rf"])
def test_load_runs_onnx_like_torch(exported, name):
    images = [str(p) for p in exported["images"]]
    torch_model = graftcv.load(exported["models"][name])
    expected, _ = torch_model.predict_proba(images)
    for source in (
        graftcv.load(exported["models"][name], runtime="onnx"),
        graftcv.load(exported["models"][name] / ONNX_FILE),
    ):
        assert source.network is None and source.runner is not None
        probs, _ = source.predict_proba(images)
        np.testing.assert_allclose(probs, expected, atol=1e-4)
        assert (probs.argmax(1) == expected.argmax(1)).all()
        assert [r["class"] for r in source.predict(images)] == [r["class"] for r in torch_model.predict(images)]


def test_cli_export_then_predict_with_onnx(exported, tmp_path, monkeypatch, capsys, restore_logging):
    model = shutil.copytree(exported["models"]["logreg"], tmp_path / "model")
    (model / ONNX_FILE).unlink()
    report = tmp_path / "parity.json"
    argv = ["export", model, "--format", "onnx", "--opset", "17", "--exporter", "torchscript"]
    assert run_main([*argv, "--images", exported["data"], "--json", report], monkeypatch) == 0
    assert "max |Δlogit|" in capsys.readouterr().out
    figures = json.loads(report.read_text())
    assert figures["opset"] == 17 and figures["max_abs_logit_diff"] <= 1e-4 and figures["top1_agreement"] == 1.0

    images = [str(p) for p in exported["images"]]
    rows = {}
    for kind, target in [("torch", [model]), ("onnx", [model, "--runtime", "onnx"]), ("file", [model / ONNX_FILE])]:
        out_csv = tmp_path / f"{kind}.csv"
        assert run_main(["predict", *target, *images, "--topk", "2", "--csv", out_csv], monkeypatch) == 0
        with out_csv.open() as handle:
            rows[kind] = list(csv.DictReader(handle))
    assert (
        [r["class1"] for r in rows["onnx"]]
        == [r["class1"] for r in rows["torch"]]
        == [r["class1"] for r in rows["file"]]
    )
    for a, b in zip(rows["torch"], rows["onnx"], strict=True):
        assert abs(float(a["prob1"]) - float(b["prob1"])) <= 1e-4


def test_cli_export_defaults_to_the_runs_training_images(exported, tmp_path, monkeypatch, capsys, restore_logging):
    """Without --images the parity check reads the data recorded in RUN/config.json."""
    run = shutil.copytree(exported["models"]["head"].parent, tmp_path / "run")
    (run / "model" / ONNX_FILE).unlink()
    assert run_main(["export", run / "model", "--exporter", "torchscript"], monkeypatch) == 0
    meta = json.loads((run / "model" / "graftcv.json").read_text())
    assert meta["onnx"]["parity"]["real_images"] == len(list(exported["data"].rglob("*.jpg")))


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("format", "Unknown export format 'tflite'"),
        ("exporter", "Unknown exporter 'magic'"),
        ("no-export", "has no ONNX export"),
        ("not-a-model", "not a graftcv model"),
    ],
)
def test_cli_errors_are_one_line(case, fragment, exported, tmp_path, monkeypatch, capsys, restore_logging):
    model = shutil.copytree(exported["models"]["head"], tmp_path / "model")
    argv = {
        "format": ["export", model, "--format", "tflite"],
        "exporter": ["export", model, "--exporter", "magic"],
        "no-export": ["predict", tmp_path / "plain", exported["images"][0], "--runtime", "onnx"],
        "not-a-model": ["export", tmp_path],
    }[case]
    if case == "no-export":
        plain = shutil.copytree(model, tmp_path / "plain")
        (plain / ONNX_FILE).unlink()
        meta = json.loads((plain / "graftcv.json").read_text())
        del meta["onnx"]
        (plain / "graftcv.json").write_text(json.dumps(meta))
    assert run_main(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] != [] and "Traceback" not in err
    assert fragment in " ".join(err.split())


def test_tampered_onnx_is_refused(exported, tmp_path):
    model = shutil.copytree(exported["models"]["head"], tmp_path / "model")
    raw = bytearray((model / ONNX_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (model / ONNX_FILE).write_bytes(bytes(raw))
    with pytest.raises(GraftcvError, match="checksum"):
        graftcv.load(model, runtime="onnx")
    (model / ONNX_FILE).write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(GraftcvError, match="checksum"):
        graftcv.load(model / ONNX_FILE)


def test_failed_parity_writes_nothing(exported, tmp_path):
    """A tolerance no export can meet: an error, and neither model.onnx nor an `onnx` entry appears."""
    model = shutil.copytree(exported["models"]["head"], tmp_path / "model")
    (model / ONNX_FILE).unlink()
    meta = json.loads((model / "graftcv.json").read_text())
    del meta["onnx"]
    (model / "graftcv.json").write_text(json.dumps(meta))
    with pytest.raises(GraftcvError, match="does not match PyTorch"):
        export_onnx(model, exporter="torchscript", tolerance=-1.0)
    assert not (model / ONNX_FILE).exists()
    assert "onnx" not in json.loads((model / "graftcv.json").read_text())


def test_resaving_drops_the_stale_export(exported, tmp_path):
    """model.onnx belongs to the weights it was exported from: a re-saved model has none."""
    saved = graftcv.load(exported["models"]["head"]).save(tmp_path / "resaved")
    assert not (saved / ONNX_FILE).exists()
    assert "onnx" not in json.loads((saved / "graftcv.json").read_text())
    with pytest.raises(GraftcvError, match="cannot be saved"):
        graftcv.load(exported["models"]["head"], runtime="onnx").save(tmp_path / "nope")


def test_service_runs_the_onnx_export(exported):
    """`graftcv serve` picks model.onnx once exported (runtime auto) and answers like the PyTorch model."""
    from fastapi.testclient import TestClient

    from graftcv.serve import ServeSettings, create_app

    image = exported["images"][0]
    expected = graftcv.load(exported["models"]["head"]).predict([str(image)], topk=3)[0]
    for runtime in ("auto", "onnx"):
        client = TestClient(create_app(ServeSettings(str(exported["models"]["head"]), runtime=runtime)))
        assert client.get("/metadata").json()["runtime"] == "onnx"
        answer = client.post("/predict", files={"files": (image.name, image.read_bytes(), "image/jpeg")}).json()
        got = answer["predictions"][0]
        assert got["class"] == expected["class"]
        assert abs(got["probability"] - expected["probability"]) <= 1e-4
