"""Self-contained HTML pages: one jinja2 environment over graftcv's templates, and the figure style they share."""

from __future__ import annotations

import base64
import io
from functools import cache
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from graftcv.atomic import write_text


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("graftcv", "templates"), autoescape=select_autoescape(["html", "j2"]))


def render_page(template: str, path: str | Path, **context: object) -> Path:
    """Render templates/TEMPLATE with `context` and write it to `path` atomically."""
    return write_text(path, _environment().get_template(template).render(**context))


def new_figure(width: float, height: float) -> Figure:
    """A bare matplotlib Figure: no pyplot state, safe in any thread, the same look on every page."""
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
