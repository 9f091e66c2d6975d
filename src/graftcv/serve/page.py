"""`GET /`: one self-contained page (no CDN, no build step) where a person drops or picks an image and sees the
top classes with their probabilities and the CAM overlay, through the service's own /predict and /explain."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from graftcv.pages import render_text


def page_html(classes: list[str], backbone: str, max_file_mb: float, several_labels: bool) -> str:
    """templates/serve.html.j2 for this model (names escaped by jinja's autoescape)."""
    shown = ", ".join(classes[:30]) + (f" … ({len(classes)} classes)" if len(classes) > 30 else "")
    return render_text(
        "serve.html.j2",
        title=backbone,
        classes_text=f"{len(classes)} classes: {shown}",
        max_mb=f"{max_file_mb:g}",
        several=several_labels,
    )


def install_page(app: FastAPI, classes: list[str], backbone: str, max_file_mb: float, several_labels: bool) -> None:
    text = page_html(classes, backbone, max_file_mb, several_labels)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The web page: pick or drop an image, see its classes and its CAM."""
        return HTMLResponse(text)
