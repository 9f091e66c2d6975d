"""Self-contained HTML pages: one jinja2 environment over graftcv's templates, and the figure style they share."""

from __future__ import annotations

import base64
import io
from functools import cache
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib import font_manager, rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from graftcv.atomic import write_text


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("graftcv", "templates"), autoescape=select_autoescape(["html", "j2"]))


def render_text(template: str, **context: object) -> str:
    """templates/TEMPLATE rendered with `context`."""
    return _environment().get_template(template).render(**context)


def render_page(template: str, path: str | Path, **context: object) -> Path:
    """Render templates/TEMPLATE with `context` and write it to `path` atomically."""
    return write_text(path, _environment().get_template(template).render(**context))


# --- figure fonts ------------------------------------------------------------------------------------
#
# Class names come in every script, and a glyph that no font of a text has is drawn as an empty box. matplotlib
# (>= 3.6) falls back glyph by glyph along the families of a text's font.family list; a Text copies that list
# from rcParams when it is made (tick labels even while the figure is drawn), so the fallbacks go into rcParams,
# not into one figure: appended to whatever font.family holds, so the usual font (DejaVu Sans, or the user's
# choice) still draws every glyph it has and the fallbacks only the ones it lacks. Appending the same names is
# idempotent, so any thread may do it. Only installed families are appended (matplotlib warns for each one it
# cannot find) and none is ever downloaded. DejaVu Sans, which matplotlib ships, already covers Latin, Greek,
# Cyrillic, Arabic, Hebrew, Armenian, Georgian and some emoji; these are the usual wide-coverage fonts of
# Linux, macOS and Windows for the rest. Colour-bitmap emoji fonts (Noto Color Emoji, Apple Color Emoji) are
# left out: matplotlib cannot draw them.
FALLBACK_FONTS = (
    "Noto Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "Noto Sans Devanagari",
    "Noto Sans Bengali",
    "Noto Sans Tamil",
    "Noto Sans Thai",
    "Noto Sans Ethiopic",
    "Noto Sans Symbols",
    "Noto Sans Symbols2",
    "Noto Emoji",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Arial Unicode MS",
    "Microsoft YaHei",
    "Yu Gothic",
    "Malgun Gothic",
    "Nirmala UI",
    "Leelawadee UI",
    "Segoe UI Symbol",
    "Segoe UI Emoji",
    "Hiragino Sans",
    "PingFang SC",
    "Apple SD Gothic Neo",
    "Kohinoor Devanagari",
    "Thonburi",
    "FreeSans",
    "Unifont",
)


@cache
def _installed_fallbacks() -> tuple[str, ...]:
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return tuple(name for name in FALLBACK_FONTS if name in installed)


def figure_fonts() -> list[str]:
    """rcParams' font.family with the installed fallback fonts appended (once): the families figures draw with."""
    families = list(rcParams["font.family"])
    missing = [name for name in _installed_fallbacks() if name not in families]
    if missing:
        families += missing
        rcParams["font.family"] = families
    return families


@cache
def _coverage(paths: tuple[str, ...]) -> frozenset[int]:
    return frozenset().union(*(font_manager.get_font(path).get_charmap() for path in paths))


def _drawable() -> frozenset[int]:
    """The code points some font of the fallback chain has a glyph for (the chain matplotlib builds)."""
    paths = []
    for family in figure_fonts():
        try:
            paths.append(font_manager.findfont(font_manager.FontProperties(family=[family]), fallback_to_default=False))
        except ValueError:  # a family the user named that is not installed
            continue
    return _coverage(tuple(dict.fromkeys(str(path) for path in paths)))


def missing_glyphs(text: str) -> list[str]:
    """The characters of `text` that no font of the figures has a glyph for, each once, in order."""
    drawable = _drawable()
    return list(dict.fromkeys(c for c in text if ord(c) not in drawable))


def _escaped(text: str) -> str:
    missing = set(missing_glyphs(text))
    return "".join(c.encode("unicode_escape").decode("ascii") if c in missing else c for c in text)


def figure_label(text: str) -> str:
    """`text` as a figure can draw it: a character no installed font has is written as its escape (日本語 →
    \\u65e5\\u672c\\u8a9e, emoji → \\U0001f44d), which is ASCII and says which character it was, rather than an
    empty box that says nothing; and a $ stays a dollar sign (two of them would start mathtext). Pages keep the
    real names in their HTML text and note which ones their figures escape (see `escaped_names`)."""
    return _escaped(text).replace("$", r"\$")


def escaped_names(names: list[str]) -> dict[str, str]:
    """The names that figures cannot draw as they are, each with what they show instead."""
    return {name: _escaped(name) for name in names if missing_glyphs(name)}


def new_figure(width: float, height: float) -> Figure:
    """A bare matplotlib Figure: no pyplot state, safe in any thread, the same look on every page, and fonts
    that fall back glyph by glyph (class names in any script; see `figure_label` for glyphs no font has)."""
    figure_fonts()
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi)
    return buffer.getvalue()


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(figure: Figure) -> str:
    """A matplotlib figure as a base64 PNG data URI."""
    return png_uri(figure_png(figure))


def image_uri(pixels: np.ndarray, width: int = 176) -> str:
    """A photo thumbnail as a base64 JPEG data URI (a photo as PNG would be about five times larger)."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
