"""The run report: written by every `graftcv train`, rebuilt by `graftcv report`, self-contained, and rendered."""

from __future__ import annotations

import base64
import csv
import io
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_class_folders
from PIL import Image

import graftcv.cli
import graftcv.report
from graftcv.report import build_report
from graftcv.report.galleries import MISTAKES, PER_CLASS

TINY_ARGS = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--epochs", "2", "--head-epochs", "2",
             "--batch-size", "8", "--workers", "0", "--val-fraction", "0.4"]  # fmt: skip
CLASSES = ["class_0", "class_1", "class_2"]
SECTIONS = ["summary", "data", "settings", "curves", "validation-evaluation", "mistakes", "class-cams"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DATA_URI = re.compile(r'src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


def run_main(patch: pytest.MonkeyPatch, *args: object) -> int:
    """`graftcv ARGS` in this process, logging put back afterwards; the exit code."""
    root, package = logging.getLogger(), logging.getLogger("graftcv")
    handlers, level, package_level = root.handlers[:], root.level, package.level
    patch.setattr(sys, "argv", ["graftcv", *map(str, args)])
    try:
        graftcv.cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        package.setLevel(package_level)
    return 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finetune run (two head epochs on features, two of the whole network) made by `graftcv train`."""
    base = tmp_path_factory.mktemp("report")
    data = write_class_folders(base / "data", classes=3, per_class=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTCV_CACHE", str(base / "cache"))
        code = run_main(patch, "train", data, *TINY_ARGS, "--strategy", "finetune", "--out", base / "run")
    assert code == 0
    return base / "run"


@pytest.fixture
def copy_of_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def sections(page: str) -> list[str]:
    return re.findall(r'<section[^>]* id="([^"]+)"', page)


def figures_in(page: str, section: str) -> int:
    """How many CAM figures a section holds."""
    body = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return body.count('<figure class="cam">')


def test_train_writes_report_and_predictions(run_dir: Path) -> None:
    assert (run_dir / "report.html").is_file() and (run_dir / "model" / "model.safetensors").is_file()
    with (run_dir / "val_predictions.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "label", "predicted", "probability", *CLASSES]
    assert len(rows) > 1 + 3
    for row in rows[1:]:
        assert Path(row[0]).is_file() and row[1] in CLASSES and row[2] in CLASSES
        probabilities = [float(v) for v in row[4:]]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4) and float(row[3]) == pytest.approx(max(probabilities))


def test_report_has_every_section_and_only_inline_images(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    assert sections(page) == SECTIONS
    for needle in ("Learning curves", "Most confused pairs", "precision", "class_0", "resnet10t", "finetune"):
        assert needle in page, needle
    images = DATA_URI.findall(page)
    assert len(images) == page.count("<img ")  # every picture is inline
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "<link" not in page
    kinds = [kind for kind, _ in images]
    assert kinds.count("png") == 2  # learning curves and the confusion matrix
    for _, data in images:
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        assert picture.width >= 32 and picture.height >= 32
    with (run_dir / "val_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    wrong = sum(r["label"] != r["predicted"] for r in rows)
    assert figures_in(page, "mistakes") == min(wrong, MISTAKES)
    per_class = figures_in(page, "class-cams")
    assert 3 <= per_class <= 3 * PER_CLASS  # every class has validation images here
    assert kinds.count("jpeg") == 2 * (figures_in(page, "mistakes") + per_class)  # image and overlay each


def test_report_command_rebuilds(copy_of_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (copy_of_run / "report.html").unlink()
    assert run_main(monkeypatch, "report", copy_of_run) == 0
    page = (copy_of_run / "report.html").read_text()
    assert sections(page) == SECTIONS and figures_in(page, "class-cams") >= 3
    assert run_main(monkeypatch, "report", copy_of_run, "--no-cams") == 0
    page = (copy_of_run / "report.html").read_text()
    assert figures_in(page, "class-cams") == 0 and figures_in(page, "mistakes") == 0


def test_report_of_an_incomplete_run(copy_of_run: Path) -> None:
    """Missing files cost their sections, with a note saying why, never the report."""
    for name in ("val_predictions.csv", "metrics.csv", "val_metrics.json"):
        (copy_of_run / name).unlink()
    page = build_report(copy_of_run).read_text()
    assert "val_predictions.csv is missing" in page and "No per-epoch history" in page
    assert "val_metrics.json is missing" in page and "validation-evaluation" not in sections(page)
    (copy_of_run / "summary.json").unlink()
    shutil.rmtree(copy_of_run / "model")
    (copy_of_run / "val_predictions.csv").write_text("path,label,predicted,probability\n")
    page = build_report(copy_of_run).read_text()
    assert "the run did not finish" in page and "the model could not be loaded" in page


def test_report_of_no_run_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert run_main(monkeypatch, "report", tmp_path) == 2
    err = capsys.readouterr().err
    assert "is not a graftcv run directory" in " ".join(err.split()) and "Traceback" not in err


def test_a_failing_report_keeps_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def broken(run_dir: Path, cams: bool = True) -> Path:
        raise RuntimeError("matplotlib fell over")

    monkeypatch.setattr(graftcv.report, "build_report", broken)
    data = write_class_folders(tmp_path / "data", classes=2, per_class=4)
    args = ["--model", "resnet10t", "--no-pretrained", "--size", "32", "--epochs", "1", "--workers", "0",
            "--strategy", "head"]  # fmt: skip
    code = run_main(monkeypatch, "train", data, *args, "--out", tmp_path / "run")
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file() and (run / "summary.json").is_file()
    assert not (run / "report.html").exists()
    assert "No report.html (matplotlib fell over)" in err and "graftcv report" in err


def screenshot(
    page: Path, png: Path, profile: Path, size: tuple[int, int] = (1200, 3000)
) -> subprocess.CompletedProcess:
    """The page as headless Chromium draws it, at `size` (width, height)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    done = screenshot(run_dir / "report.html", png, tmp_path / "profile")
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    picture = Image.open(png).convert("RGB")
    assert picture.size == (1200, 3000)
    pixels = np.asarray(picture, dtype=np.float32)
    assert pixels.std() > 20, "a blank page"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000  # text, charts and photos, not a few flat colours
    header = pixels[2:18, 600:1190].mean(axis=(0, 1))
    assert np.allclose(header, (0x1F, 0x3A, 0x5F), atol=25), header  # the stylesheet applied: the dark-blue band
    lower = pixels[1500:].std()
    assert lower > 10, "the page ends early: charts and galleries missing"
