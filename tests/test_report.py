"""The run report: written by every `graftcv train`, rebuilt by `graftcv report`, self-contained, and rendered."""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from conftest import write_class_folders
from matplotlib.cbook import is_math_text
from matplotlib.text import Text
from PIL import Image

import graftcv.cli
import graftcv.report
from graftcv import pages
from graftcv.atomic import write_json
from graftcv.pages import figure_fonts, figure_label, figure_png, missing_glyphs, new_figure
from graftcv.report import build_report
from graftcv.report.figures import confusion_figure
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


# --- class names in any script (issue 23) -----------------------------------------------------------------

UNICODE_CLASSES = ["日本語", "Ελληνικά", "čeština", "العربية", "cat 🐱", "👍", "a$b$c", "a<b>&c"]


def _escape(name: str) -> str:
    """The documented fallback of `pages.figure_label`: each character no font draws as its Python escape."""
    return "".join(c if not missing_glyphs(c) else c.encode("unicode_escape").decode("ascii") for c in name)


def _drawn(figure) -> list[str]:
    """Every text a figure draws (tick labels included), as matplotlib shows it (a \\$ is a dollar sign)."""
    return [text.get_text().replace(r"\$", "$") for text in figure.findobj(Text) if text.get_text()]


def test_figures_draw_class_names_in_any_script_or_their_escape(caplog: pytest.LogCaptureFixture) -> None:
    n = len(UNICODE_CLASSES)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        figure = confusion_figure([[i + j for j in range(n)] for i in range(n)], UNICODE_CLASSES)
        figure_png(figure)
    assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]
    assert "findfont" not in caplog.text
    axis = figure.axes[0]
    for ticks in (axis.get_xticklabels(), axis.get_yticklabels()):
        assert [t.get_text().replace(r"\$", "$") for t in ticks] == [_escape(name) for name in UNICODE_CLASSES]
    # DejaVu Sans, which matplotlib ships, draws these as they are on any machine; $ never starts mathtext
    for name in ("Ελληνικά", "čeština", "العربية", "cat 🐱", "a$b$c", "a<b>&c"):
        assert figure_label(name).replace(r"\$", "$") == name and name in _drawn(figure)
    assert not [t.get_text() for t in figure.findobj(Text) if is_math_text(t.get_text())]
    cjk = figure_label("日本語")
    assert cjk == "日本語" or cjk == r"\u65e5\u672c\u8a9e"  # a CJK font installed, or the escape
    assert figure_label("👍") in ("👍", r"\U0001f44d")


@pytest.fixture
def stix_fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """STIXGeneral (shipped with matplotlib, so on every machine) as the only fallback font."""
    monkeypatch.setattr(pages, "FALLBACK_FONTS", ("Not An Installed Font", "STIXGeneral"))
    pages._installed_fallbacks.cache_clear()
    with matplotlib.rc_context():
        yield
    pages._installed_fallbacks.cache_clear()


def test_installed_fallback_fonts_draw_glyphs_glyph_by_glyph(stix_fallback: None) -> None:
    bold = "𝐁𝐂 class"  # MATHEMATICAL BOLD CAPITAL B, C: in STIXGeneral, not in DejaVu Sans
    figure = new_figure(3, 1)
    assert figure_fonts()[-1] == "STIXGeneral" and "Not An Installed Font" not in figure_fonts()
    assert figure_fonts() == figure_fonts()  # appended once
    figure.text(0.1, 0.5, figure_label(bold))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure_png(figure)
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert figure_label(bold) == bold and missing_glyphs(bold) == []


def test_report_keeps_real_class_names_in_its_text(tmp_path: Path) -> None:
    """A run directory written by hand (no training): the page's HTML keeps the names, escaped for HTML only,
    and a note says which names the figures write as escapes."""
    names = UNICODE_CLASSES
    n = len(names)
    counts = dict.fromkeys(names, 3)
    write_json(tmp_path / "config.json", {"model": "resnet10t", "strategy": "head",
               "data_summary": {"classes": names, "train_counts": counts, "val_counts": counts}})  # fmt: skip
    write_json(tmp_path / "summary.json", {"val_accuracy": 0.5, "classes": names})
    per_class = [{"class": c, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for c in names]
    matrix = [[3 if i == j else 0 for j in range(n)] for i in range(n)]
    confused = [{"true": names[0], "predicted": names[1], "count": 1}]
    write_json(tmp_path / "val_metrics.json", {"confusion_matrix": matrix, "per_class": per_class,
               "most_confused": confused, "accuracy": 1.0, "n": 3 * n})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = build_report(tmp_path, cams=False).read_text()
    assert not [w for w in caught if "missing from font" in str(w.message)]
    for name in names:
        assert html.escape(name, quote=False) in page, name
    assert "a&lt;b&gt;&amp;c" in page and "a<b>" not in page  # jinja autoescape
    escaped = pages.escaped_names(names)
    if escaped:
        assert "figures write them as escapes" in page
        assert all(f"{html.escape(name)} as {label}" in page for name, label in escaped.items())
    assert len(DATA_URI.findall(page)) == 1  # the confusion matrix (no history, no CAMs)
