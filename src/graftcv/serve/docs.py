"""/docs (Swagger UI) and /redoc with their JavaScript and CSS served from fastapi-offline's files, not a CDN."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/static"
# validatorUrl: Swagger UI would otherwise send the spec to validator.swagger.io for its badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def assets_directory() -> Path:
    """The folder of Swagger UI and ReDoc files that fastapi-offline ships (kept current with their releases)."""
    return Path(fastapi_offline.__file__).resolve().parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve the interactive docs offline; create `app` with `docs_url=None, redoc_url=None`."""
    app.mount(STATIC, StaticFiles(directory=assets_directory()), name="static")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:  # the prefix a reverse proxy mounts the service under, if any
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{prefix}{openapi_url}",
            title=f"{title} — Swagger UI",
            swagger_js_url=f"{prefix}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{STATIC}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(
            openapi_url=f"{prefix}{openapi_url}",
            title=f"{title} — ReDoc",
            redoc_js_url=f"{prefix}{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}{STATIC}/favicon.png",
            with_google_fonts=False,
        )
