"""Prediction without torch: an exported model on onnxruntime, numpy and PIL, with the results of the torch path."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, TINY, write_class_folders, write_image
from PIL import Image

import graftcv
from graftcv import GraftcvError
from graftcv.lite import LitePredictor, is_exported, preprocess
from graftcv.runtime import ONNX_FILE, OnnxRunner, onnx_problem

pytest.importorskip("onnxruntime")
HEAVY = ("torch", "timm", "lightning", "sklearn")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="400", GRAFTCV_CACHE=str(cwd / ".cache"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def _cli_without_torch(argv: list, cwd: Path) -> tuple[int, str, str, list[str]]:
    """Run `graftcv ARGV` in a fresh interpreter: (exit code, stdout, stderr, heavy modules it imported)."""
    code = (
        "import sys, graftcv.cli\n"
        f"sys.argv = ['graftcv', *{[str(a) for a in argv]!r}]\n"
        "try:\n    graftcv.cli.main()\n    status = 0\n"
        "except SystemExit as done:\n    status = done.code or 0\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), status)\n"
    )
    done = _python(code, cwd)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY"), done.stderr[-3000:]
    heavy, status = last.removeprefix("HEAVY ").rsplit(" ", 1)
    return int(status), done.stdout, done.stderr, json.loads(heavy.replace("'", '"'))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny fine-tuned classifier, exported once, and images of every awkward kind to predict."""
    from graftcv.export import export_onnx

    base = tmp_path_factory.mktemp("lite")
    data = write_class_folders(base / "data", classes=3, per_class=4, size=48)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        run = graftcv.fit(data, out=base / "run", strategy="head", **TINY)
        export_onnx(run.out_dir / "model", images=[data], exporter="torchscript")
    images = base / "images"
    write_image(images / "big.jpg", COLOURS[0], seed=7, size=400)  # large enough for JPEG draft decoding
    write_image(images / "plain.png", COLOURS[1], seed=8, size=37)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 4096, (91, 37), dtype=np.uint16)).save(images / "wide16.png")
    Image.fromarray(rng.integers(0, 256, (20, 300, 4), dtype=np.uint8), "RGBA").save(images / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8), "RGB").convert("P").save(images / "pal.png")
    (images / "notes.txt").write_text("not an image")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return {"model": run.out_dir / "model", "data": data, "images": images}


# --- no torch ------------------------------------------------------------------------------------------------


def test_the_lite_modules_import_nothing_heavy(tmp_path):
    code = (
        "import sys, graftcv.cli.inference, graftcv.lite, graftcv.runtime, graftcv.catalog\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_cli_predict_on_an_export_needs_no_torch(exported, tmp_path):
    """`graftcv predict` on an exported model: the torch model's classes, and torch never imported."""
    out_csv = tmp_path / "lite.csv"
    status, stdout, stderr, heavy = _cli_without_torch(
        ["predict", exported["model"], exported["images"], "--topk", "2", "--csv", out_csv], tmp_path
    )
    assert status == 0, stderr[-3000:]
    assert heavy == []
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    expected = graftcv.load(exported["model"], runtime="torch").predict([str(exported["images"])], topk=2)
    assert [r["path"] for r in rows] == [e["path"] for e in expected]
    assert [r["class1"] for r in rows] == [e["class"] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        assert abs(float(row["prob1"]) - want["probability"]) <= 1e-4
    assert "big.jpg" in stdout and "Skipped 2 file(s)" in " ".join(stderr.split())


def test_lite_predicts_what_the_onnx_model_predicts(exported):
    """Same preprocessing, same session: the results of graftcv.load(runtime="onnx") within 1e-5."""
    images = [str(exported["images"])]
    lite = LitePredictor.open(exported["model"], threads=2).predict(images, topk=3, batch_size=2)
    full = graftcv.load(exported["model"], runtime="onnx", threads=2).predict(images, topk=3, batch_size=2)
    assert [r["path"] for r in lite] == [r["path"] for r in full]
    for a, b in zip(lite, full, strict=True):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose(
            [t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-5
        )
    pil = [Image.open(exported["images"] / "big.jpg"), Image.open(exported["images"] / "alpha.png")]
    lite_pil = LitePredictor.open(exported["model"]).predict_proba(pil)[0]
    np.testing.assert_allclose(
        lite_pil, graftcv.load(exported["model"], runtime="onnx").predict_proba(pil)[0], atol=1e-5
    )


def test_cli_runtimes(exported, tmp_path):
    """auto picks the export, --runtime torch does not, and evaluate takes --runtime too."""
    from typer.testing import CliRunner

    from graftcv.cli import app

    image = str(exported["images"] / "big.jpg")
    for runtime in ("auto", "onnx", "torch"):
        result = CliRunner().invoke(app, ["predict", str(exported["model"]), image, "--runtime", runtime])
        assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(app, ["predict", str(exported["model"]), image, "--runtime", "tpu"])
    assert bad.exit_code == 1 and "Unknown runtime 'tpu'" in str(bad.exception)
    assert is_exported(exported["model"]) and is_exported(exported["model"] / ONNX_FILE)
    for runtime in ("auto", "torch"):
        out = tmp_path / runtime
        args = ["evaluate", str(exported["model"]), str(exported["data"]), "--out", str(out), "--runtime", runtime]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    auto, torch_run = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("auto", "torch"))
    assert auto["n"] == torch_run["n"] == 12 and auto["accuracy"] == torch_run["accuracy"]


def test_cli_models_needs_no_torch(tmp_path):
    status, stdout, stderr, heavy = _cli_without_torch(["models"], tmp_path)
    assert status == 0, stderr[-3000:]
    assert heavy == []
    assert "tf_efficientnet_lite0" in stdout and "resnet50" in stdout


# --- the same preprocessing --------------------------------------------------------------------------------


def _image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 4096, (height, width), dtype=np.uint16))
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16", "P", "L"])
@pytest.mark.parametrize("width, height", [(37, 91), (300, 20), (64, 64), (225, 224), (1, 1)])
def test_preprocess_is_graftcvs_evaluation_transform(mode, width, height):
    from graftcv.data.images import to_rgb
    from graftcv.data.transforms import build_transform

    image = _image(mode, width, height, seed=width * height)
    configs = itertools.product(
        [[3, 32, 32], [3, 224, 224], [3, 48, 40]], [0.875, 0.95, 1.0, 1.15], ["bicubic", "bilinear"]
    )
    for size, crop_pct, interpolation in configs:
        for crop_mode in ("center", "squash", "border"):
            config = dict(
                input_size=size, interpolation=interpolation, mean=MEAN, std=STD, crop_pct=crop_pct, crop_mode=crop_mode
            )
            expected = build_transform(config)(to_rgb(image)).numpy()
            got = preprocess(image, config)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=str(config))


# --- checks before running ------------------------------------------------------------------------------------


def test_tampered_onnx_is_refused_in_one_sentence(exported, tmp_path):
    model = shutil.copytree(exported["model"], tmp_path / "model")
    raw = bytearray((model / ONNX_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (model / ONNX_FILE).write_bytes(bytes(raw))
    for target in (model, model / ONNX_FILE):
        with pytest.raises(GraftcvError, match="does not match the checksum") as refused:
            LitePredictor.open(target)
        message = str(refused.value)
        assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    status, _, stderr, heavy = _cli_without_torch(["predict", model, exported["images"] / "big.jpg"], tmp_path)
    assert status == 2 and heavy == [] and "Traceback" not in stderr
    assert "does not match the checksum" in " ".join(stderr.split())


def _tiny_onnx(tensor_where: str | None = None, input_name: str = "images", how: str = "location") -> bytes:
    """A hand-made model with graftcv's input and outputs, one tensor of it optionally marked external (by its
    data_location, or by external_data entries alone)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def tensor(name: str) -> TensorProto:
        made = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
        if tensor_where and name == tensor_where:
            made.ClearField("float_data")
            if how == "location":
                made.data_location = TensorProto.EXTERNAL
            else:
                entry = made.external_data.add()
                entry.key, entry.value = "location", "../../etc/passwd"
        return made

    shape = ["n", 2]
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=tensor("in_branch"))],
        "branch",
        [],
        [helper.make_tensor_value_info("k", TensorProto.FLOAT, [1])],
        [tensor("branch_init")],
    )
    nodes = [
        helper.make_node("Constant", [], ["c"], value=tensor("attribute")),
        helper.make_node("Add", [input_name, "init"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"]),
        helper.make_node("If", ["flag"], ["chosen"], then_branch=inner, else_branch=inner),
    ]
    sparse = helper.make_sparse_tensor(
        tensor("sparse_values"), helper.make_tensor("idx", TensorProto.INT64, [1], [0]), [2]
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("logits", "probabilities")],
        [tensor("init"), helper.make_tensor("flag", TensorProto.BOOL, [], [True])],
        sparse_initializer=[sparse],
    )
    function = onnx.FunctionProto(
        name="f", domain="local", node=[helper.make_node("Constant", [], ["z"], value=tensor("in_function"))]
    )
    model = helper.make_model(graph, functions=[function])
    return model.SerializeToString()


@pytest.mark.parametrize("how", ["location", "entries"])
@pytest.mark.parametrize("where", ["init", "attribute", "branch_init", "in_branch", "sparse_values", "in_function"])
def test_external_data_is_refused_wherever_it_sits(where, how):
    assert onnx_problem(_tiny_onnx()) is None
    assert onnx_problem(_tiny_onnx(where, how=how)) == "it refers to external data files"


def test_onnx_problem_names_what_is_wrong(exported):
    assert onnx_problem((exported["model"] / ONNX_FILE).read_bytes()) is None
    assert "does not have graftcv's input" in onnx_problem(_tiny_onnx(input_name="pixels"))
    for garbage in (b"\x3a\xff\xff\xff", b"\x3a\x05ab", b"\x0b\x00", b"\x00\x01"):  # truncated, a group, field 0
        assert onnx_problem(garbage) == "it is not an ONNX model", garbage
    assert "does not have graftcv's input" in onnx_problem(b"")


def test_the_runner_answers_in_the_kind_it_is_given(exported):
    import torch

    runner = OnnxRunner((exported["model"] / ONNX_FILE).read_bytes(), threads=1)
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    as_array, as_tensor = runner(batch), runner(torch.from_numpy(batch))
    assert isinstance(as_array, np.ndarray) and isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_array, as_tensor.numpy())
    logits, probs = runner.outputs(torch.from_numpy(batch))
    np.testing.assert_array_equal(probs, as_array)


def test_the_static_catalog_matches_timm():
    import timm

    from graftcv.backbones.factory import count_parameters, meta_model
    from graftcv.catalog import CATALOG

    for name, known in CATALOG.items():
        cfg = timm.models.get_pretrained_cfg(name)
        assert (known.input_size, known.hf_hub_id) == (cfg.input_size[-1], cfg.hf_hub_id), name
        assert known.params == count_parameters(meta_model(name)), name
