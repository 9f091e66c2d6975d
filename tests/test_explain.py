"""Class activation maps: every method's output, the target layer per backbone family, localization scores."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import TINY, write_class_folders
from PIL import Image

import graftcv
import graftcv.cli
from graftcv.artifact import Classifier
from graftcv.errors import GraftcvError
from graftcv.explain.cams import CamExplainer
from graftcv.explain.layers import find_target_layer
from graftcv.explain.methods import user_methods
from graftcv.explain.pipeline import CamResult, annotation_masks, score_results
from graftcv.explain.quality import localization_scores
from graftcv.explain.render import caption, render_cam
from graftcv.model import Model

CLASSES = ["class_0", "class_1", "class_2"]
GRAFTCV = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "graftcv"


def data_config(size: int) -> dict:
    """No centre crop (crop_pct 1): a square image is only resized, so pixel positions scale exactly."""
    return {
        "input_size": [3, size, size],
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


def random_model(name: str = "resnet10t", size: int = 32, classes: list[str] = CLASSES) -> Model:
    """A random-init timm network wrapped as a graftcv Model (no training: CAM shapes do not need it)."""
    torch.manual_seed(0)
    network = timm.create_model(name, pretrained=False, num_classes=len(classes))
    return Model(Classifier(network), {"classes": classes, "data_config": data_config(size)}, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA/class_c/img_i.jpg, 48 px, two per class."""
    return write_class_folders(tmp_path_factory.mktemp("explain") / "data", classes=3, per_class=2)


@pytest.fixture(scope="module")
def model() -> Model:
    return random_model()


# --- each method ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", user_methods())
def test_each_method_gives_one_map_per_image(method: str, model: Model, images: Path) -> None:
    paths = [str(images / "class_0" / "img_00.jpg"), str(images / "class_2" / "img_01.jpg")]
    results = model.explain(paths, method=method)
    assert [r.name for r in results] == paths
    for result in results:
        assert result.cam.shape == (32, 32) and result.cam.dtype == np.float32
        assert result.cam.min() >= 0.0 and result.cam.max() <= 1.0
        assert np.isfinite(result.cam).all()
        assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8
        assert result.method == method and result.layer == "layer3"  # layer4 is 1×1 at 32 px
        assert result.predicted in CLASSES and result.target == result.predicted  # --target pred
        assert 0.0 <= result.probability <= 1.0 and result.target_probability == pytest.approx(result.probability)
        assert result.label == Path(result.name).parent.name  # class folders give the true class


def test_targets_true_and_named_class(model: Model, images: Path) -> None:
    truth = model.explain(str(images), target="true")
    assert len(truth) == 6 and [r.target for r in truth] == [r.label for r in truth]
    named = model.explain(str(images / "class_0"), target="class_2")
    assert {r.target for r in named} == {"class_2"}
    probabilities = model.predict_proba(str(images / "class_0"))[0][:, 2]
    assert [r.target_probability for r in named] == pytest.approx(probabilities.tolist(), abs=1e-5)
    pictures = [Image.open(images / "class_1" / "img_00.jpg")]
    assert model.explain(pictures, target="class_1", labels=["class_1"])[0].label == "class_1"
    with pytest.raises(GraftcvError, match="--target true needs each image's class"):
        model.explain(pictures, target="true")
    with pytest.raises(GraftcvError, match="Unknown target 'zebra'"):
        model.explain(pictures, target="zebra")
    with pytest.raises(GraftcvError, match=re.escape("Unknown CAM method 'gradcam+++'")):
        model.explain(pictures, method="gradcam+++")


def test_cams_differ_between_classes(model: Model, images: Path) -> None:
    """A map explains its target: the same image gives different Grad-CAMs for different classes."""
    image = str(images / "class_1" / "img_01.jpg")
    first, second = (model.explain(image, target=c)[0].cam for c in ("class_0", "class_1"))
    assert not np.allclose(first, second)


def test_linear_probe_model_is_explained(tmp_path: Path) -> None:
    """A probe head (scikit-learn weights) after a headless backbone: gradients still reach the layer."""
    data = write_class_folders(tmp_path / "data", classes=2, per_class=5)
    run = graftcv.fit(data, out=tmp_path / "run", **(TINY | {"strategy": "linear-probe"}))
    result = run.model.explain(str(data / "class_1" / "img_00.jpg"), method="gradcam++")[0]
    assert result.cam.shape == (32, 32) and result.cam.max() > 0


# --- target layer per backbone family ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("resnet10t", 64, "layer4"),  # ResNet: the last residual stage
        ("resnet10t", 32, "layer3"),  # ... unless the input is so small that it is 1×1 there
        ("test_efficientnet", 64, "bn2"),  # EfficientNet: conv_head, activated
        ("mobilenetv3_small_050", 64, "blocks"),  # MobileNetV3: its conv_head runs after pooling
        ("vgg11", 64, "features"),  # VGG: the convolutional part, not the ConvMlp pre-logits
    ],
)
def test_target_layer_per_family(name: str, size: int, expected: str) -> None:
    model = random_model(name, size)
    assert find_target_layer(model.network.backbone, (3, size, size)) == expected
    explainer = CamExplainer(model.network, (3, size, size), "gradcam")
    assert explainer.layer_name == expected
    cams = explainer.compute(torch.randn(2, 3, size, size), [0, 1])
    assert cams.shape == (2, size, size) and cams.max() <= 1.0


def test_layer_override_and_errors(model: Model, images: Path) -> None:
    image = str(images / "class_0" / "img_00.jpg")
    assert model.explain(image, layer="layer2")[0].layer == "layer2"
    with pytest.raises(GraftcvError, match="no layer 'layer9'"):
        model.explain(image, layer="layer9")
    vit = timm.create_model("test_vit", pretrained=False, num_classes=2)
    with pytest.raises(GraftcvError, match="convolutional backbone"):
        find_target_layer(vit, (3, 160, 160))


# --- localization on a synthetic image with a known object ------------------------------------------------------


def test_localization_hand_computed() -> None:
    """Object: rows 8–23 × cols 8–23 of a 32×32 view (256 px). CAM: 1.0 on its top half (128 px) and 0.5 on a
    strip outside it (rows 0–3, 128 px). Peak inside → hit 1; energy inside 128 / (128 + 64) = 2/3; the 20%
    threshold keeps both regions (256 px), of which 128 overlap the object: IoU 128 / (256 + 256 − 128) = 1/3."""
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:24, 8:24] = True
    cam = np.zeros((32, 32), dtype=np.float32)
    cam[8:16, 8:24] = 1.0
    cam[0:4, :] = 0.5
    scores = localization_scores(cam, mask)
    assert scores == pytest.approx({"pointing_hit": 1.0, "energy_inside": 2 / 3, "iou": 1 / 3})
    # Strip raised above the object: the peak is outside; energy 128·0.5 / (128·0.5 + 128·1) = 1/3; IoU as before.
    cam[0:4, :] = 1.0
    cam[8:16, 8:24] = 0.5
    assert localization_scores(cam, mask) == pytest.approx({"pointing_hit": 0.0, "energy_inside": 1 / 3, "iou": 1 / 3})
    # Below 20% of the peak a pixel is not part of the CAM's object: a faint 0.1 everywhere changes IoU not at all.
    faint = np.where(mask, 1.0, 0.1)
    assert localization_scores(faint, mask)["iou"] == 1.0
    assert localization_scores(faint, mask)["energy_inside"] == pytest.approx(256 / (256 + 0.1 * 768))
    assert localization_scores(mask.astype(float), mask) == {"pointing_hit": 1.0, "energy_inside": 1.0, "iou": 1.0}
    assert localization_scores(np.zeros((32, 32)), mask) == {"pointing_hit": 0.0, "energy_inside": 0.0, "iou": 0.0}
    with pytest.raises(ValueError, match="differ in shape"):
        localization_scores(cam, mask[:16])


def object_image(path: Path) -> Path:
    """A 64×64 grey image with a red square at x, y in 16–47: the object, at a known place."""
    pixels = np.full((64, 64, 3), 120, dtype=np.uint8)
    pixels[16:48, 16:48] = (220, 30, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def cam_result(path: Path, cam: np.ndarray) -> CamResult:
    image = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    return CamResult(str(path), image, cam, "class_0", 0.5, "class_0", 0.5, None, "gradcam", "layer3")


def test_boxes_and_masks_align_with_the_network_view(tmp_path: Path) -> None:
    """The box (16, 16, 48, 48) of a 64-px image is rows and columns 8–23 of the 32-px view the CAM lives in."""
    image = object_image(tmp_path / "images" / "square.png")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("path,x0,y0,x1,y1\nimages/square.png,16,16,48,48\n")
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    drawn = np.zeros((64, 64), dtype=np.uint8)
    drawn[16:48, 16:48] = 255
    Image.fromarray(drawn).save(mask_dir / "square.png")
    expected = np.zeros((32, 32), dtype=bool)
    expected[8:24, 8:24] = True
    results = [cam_result(image, np.zeros((32, 32), dtype=np.float32))]
    for kind in ({"boxes": boxes}, {"masks": mask_dir}):
        (aligned,) = annotation_masks(results, data_config(32), **kind)
        assert aligned.shape == (32, 32) and (aligned == expected).all(), kind
    with pytest.raises(GraftcvError, match="either as --masks or as --boxes"):
        annotation_masks(results, data_config(32), masks=mask_dir, boxes=boxes)
    other = tmp_path / "other.csv"
    other.write_text("elsewhere.png,0,0,4,4\n")
    with pytest.raises(GraftcvError, match="No box in .* for 1 image"):
        annotation_masks(results, data_config(32), boxes=other)


def test_scores_with_a_known_object(model: Model, tmp_path: Path) -> None:
    """score_results end to end: the hand-computed localization values, and ROAD/confidence for CAM and baseline."""
    image = object_image(tmp_path / "square.png")
    cam = np.zeros((32, 32), dtype=np.float32)
    cam[8:16, 8:24] = 1.0
    cam[0:4, :] = 0.5
    result = cam_result(image, cam)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"{image},16,16,48,48\n")
    masks = annotation_masks([result], data_config(32), boxes=boxes)
    scores = score_results(model.network, data_config(32), CLASSES, [result], masks, percentiles=(20, 80))
    assert scores["n"] == 1 and scores["method"] == "gradcam" and scores["road_percentiles"] == [20, 80]
    overall = scores["overall"]
    assert overall["pointing_hit"] == 1.0
    assert overall["energy_inside"] == pytest.approx(2 / 3) and overall["iou"] == pytest.approx(1 / 3)
    for key in ("road_morf", "road_lerf", "road_combined", "confidence_drop", "confidence_increase"):
        assert np.isfinite(overall[key]) and np.isfinite(overall[f"random_{key}"]), key
    assert overall["road_combined"] == pytest.approx((overall["road_lerf"] - overall["road_morf"]) / 2)
    assert overall["confidence_drop"] >= 0 and overall["confidence_increase"] in (0.0, 1.0)
    assert list(scores["per_class"]) == ["class_0"] and scores["images"][0]["image"] == str(image)
    again = score_results(model.network, data_config(32), CLASSES, [result], masks, percentiles=(20, 80))
    assert again["overall"] == overall  # seeded: ROAD's noise and the random CAM repeat


# --- pictures and the command line --------------------------------------------------------------------------


def test_render_writes_three_panels(model: Model, images: Path, tmp_path: Path) -> None:
    image = str(images / "class_2" / "img_00.jpg")
    other = next(c for c in CLASSES if c != model.predict(image)[0]["class"])
    result = model.explain(image, target=other)[0]
    assert caption(result).startswith(f"predicted {result.predicted} ") and f"CAM of {other}" in caption(result)
    assert caption(result).endswith("true class_2")
    path = render_cam(result, tmp_path / "out" / "cam.png")
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[1] > 2.2 * picture.shape[0]  # three panels side by side, with a caption on top
    assert picture.std() > 20


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory, images: Path) -> Path:
    """A tiny trained model (one head epoch) saved as graftcv writes it."""
    base = tmp_path_factory.mktemp("explain-model")
    run = graftcv.fit(images, out=base / "run", **(TINY | {"strategy": "head", "val_fraction": 0.5, "cache": False}))
    return run.out_dir / "model"


def run_main(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    monkeypatch.setattr(sys, "argv", ["graftcv", *map(str, args)])
    monkeypatch.setattr(graftcv.cli.out, "width", 250)  # wide enough that rich does not cut the table's columns
    try:
        graftcv.cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def test_cli_explain_writes_pngs_and_scores(saved_model, images, tmp_path, monkeypatch, capsys, restore_logging):
    boxes = tmp_path / "boxes.csv"
    with boxes.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "x0", "y0", "x1", "y1"])
        for path in sorted(images.rglob("*.jpg")):
            writer.writerow([path, 8, 8, 40, 40])
    out = tmp_path / "cams"
    code = run_main(monkeypatch, "explain", saved_model, images, "--method", "gradcam", "--target", "true",
                    "--out", out, "--score", "--boxes", boxes)  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 6 and "class_1-img_00.png" in pngs  # same file names in two folders: the folder is added
    scores = json.loads((out / "cam_scores.json").read_text())
    assert scores["n"] == 6 and set(scores["per_class"]) == set(CLASSES)
    for key in ("road_combined", "confidence_drop", "confidence_increase", "pointing_hit", "energy_inside", "iou"):
        assert scores["overall"][key] is not None and scores["overall"][f"random_{key}"] is not None, key
    text = " ".join(captured.out.split())
    assert "ROAD↑" in text and "IoU↑" in text and "random CAM" in text and "overall" in text


def cli_errors(model_dir: Path, images: Path, tmp_path: Path) -> dict[str, tuple[list, str]]:
    plain = tmp_path / "plain"
    plain.mkdir(exist_ok=True)
    Image.open(images / "class_0" / "img_00.jpg").save(plain / "x.jpg")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("somewhere_else.jpg,0,0,4,4\n")
    return {
        "method": ([model_dir, images, "--method", "gradcam+++"], "Unknown CAM method 'gradcam+++'"),
        "target": ([model_dir, images, "--target", "zebra"], "Unknown target 'zebra'"),
        "true-without-labels": ([model_dir, plain, "--target", "true"], "--target true needs each image's class"),
        "layer": ([model_dir, images, "--layer", "layer9"], "The model has no layer 'layer9'"),
        "model": ([tmp_path / "no-model", images], "is not a graftcv model"),
        "images": ([model_dir, tmp_path / "no-images"], "does not exist"),
        "both-annotations": ([model_dir, images, "--masks", tmp_path, "--boxes", boxes], "either as --masks or as"),
        "missing-box": ([model_dir, plain, "--boxes", boxes], "No box in"),
    }


@pytest.mark.parametrize("case", ["method", "target", "true-without-labels", "layer", "model", "images",
                                  "both-annotations", "missing-box"])  # fmt: skip
def test_cli_explain_errors_exit_2(case, saved_model, images, tmp_path, monkeypatch, capsys, restore_logging):
    args, fragment = cli_errors(saved_model, images, tmp_path)[case]
    code = run_main(monkeypatch, "explain", *args, "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert fragment in " ".join(err.split())
    assert "Traceback" not in err


def test_cli_explain_error_in_a_real_process(saved_model, images, tmp_path):
    command = [str(GRAFTCV)] if GRAFTCV.exists() else [sys.executable, "-m", "graftcv.cli"]
    done = subprocess.run([*command, "explain", str(saved_model), str(images), "--method", "nope", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Unknown CAM method 'nope'" in " ".join(done.stderr.split())
