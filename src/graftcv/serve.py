"""The prediction service behind `graftcv serve`: FastAPI over a saved model, where bad uploads get a 4xx."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graftcv.data import decode_size
from graftcv.errors import GraftcvError

log = logging.getLogger("graftcv")

CONFIG_ENV = "GRAFTCV_SERVE_CONFIG"  # how `--workers N` hands the settings to each worker process
RUNTIMES = ("auto", "torch", "onnx")
# Decoders a client may reach; Pillow's others (EPS runs Ghostscript, for one) are never tried on uploads.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# CAM methods with one or two passes per image; Score-CAM and Ablation-CAM run hundreds and would let
# one request hold the model for seconds.
SERVE_CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam")


@dataclass(frozen=True)
class Limits:
    """What one request may send."""

    max_files: int = 16
    max_file_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000  # width × height of one image, checked from its header before decoding
    max_body_bytes: int = 32 * 2**20  # the whole request, multipart framing included

    def check(self) -> Limits:
        if min(self.max_files, self.max_file_bytes, self.max_pixels, self.max_body_bytes) < 1:
            raise GraftcvError("Serving limits must be positive numbers.")
        return self


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs; JSON-serializable so that worker processes can rebuild it."""

    model: str
    runtime: str = "auto"
    limits: Limits = field(default_factory=Limits)
    threads: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        return cls(**{**raw, "limits": Limits(**raw["limits"])})


class BodyTooLarge(Exception):
    """Raised from `receive` when a request body without a Content-Length grows past the limit."""


TOO_LARGE = "graftcv.body_too_large"  # scope flag: the body parse failed because BodyLimit stopped it


class BodyLimit:
    """Pure ASGI middleware: a body over `max_bytes` gets a JSON 413. A declared Content-Length is judged
    before a byte is read; a body without one is counted as it arrives and abandoned at the limit.

    (FastAPI's own `max_body_size` answers the declared case in plain text, whatever the handlers say.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error(413, _too_large(self.max_bytes))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    scope[TOO_LARGE] = True
                    raise BodyTooLarge
            return message

        await self.app(scope, counted, send)


def _too_large(max_bytes: int) -> str:
    return f"The request is larger than the limit of {max_bytes:,} bytes."


class UploadError(Exception):
    """A request the service refuses: an HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- response schemas (they are also what /docs and the OpenAPI spec show) ------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong with the request, in one sentence.")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_name: str = Field(alias="class")
    probability: float


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    filename: str | None = Field(description="The upload's file name, as the client sent it.")
    class_name: str = Field(alias="class", description="The most probable class.")
    probability: float
    top: list[ClassProbability] = Field(description="The k most probable classes, best first.")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Health(BaseModel):
    status: str


class Metadata(BaseModel):
    classes: list[str]
    backbone: str
    strategy: str | None
    head: str | None
    metrics: dict[str, float | None]
    input_size: list[int]
    runtime: str
    onnx: dict[str, Any] | None
    explain_methods: list[str]
    limits: dict[str, int]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "An upload that is empty, corrupt, truncated or not an image, or an unknown class."),
        (413, "Too many files, a file or request over the size limit, or an image over the pixel limit."),
        (415, "Not multipart/form-data, or a file that is not sent as an image."),
        (422, "A missing or malformed parameter."),
    ]
}


# --- uploads → images --------------------------------------------------------------------------------


def _label(index: int, upload: UploadFile) -> str:
    name = (upload.filename or "").replace("\n", " ").strip()[:80]
    return f"file {index + 1} ({name!r})" if name else f"file {index + 1}"


def check_content_type(index: int, upload: UploadFile) -> None:
    """Images, or bytes of no declared type (what curl sends for unknown extensions)."""
    content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise UploadError(415, f"{_label(index, upload)} was sent as {content_type[:60]}, not as an image.")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency on white (as `graftcv predict` reads files)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(data: bytes, label: str, limits: Limits, draft_size: int | None = None) -> Image.Image:
    """A fully decoded RGB image, or an UploadError saying why these bytes are not one we accept."""
    if not data:
        raise UploadError(400, f"{label} is empty.")
    if len(data) > limits.max_file_bytes:
        raise UploadError(413, f"{label} is larger than the limit of {limits.max_file_bytes:,} bytes per file.")
    too_many_pixels = f"{label} has more pixels than the limit of {limits.max_pixels:,}."
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError:
        raise UploadError(413, too_many_pixels) from None
    except Exception:  # UnidentifiedImageError, or whatever a decoder raises on a malformed header
        raise UploadError(400, f"{label} is not an image in a supported format ({', '.join(FORMATS)}).") from None
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise UploadError(413, too_many_pixels)
        try:
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))  # decode at reduced scale: faster, same result
            decoded = _to_rgb(ImageOps.exif_transpose(image))
            decoded.load()
        except Exception:  # truncated or corrupt pixel data: OSError, ValueError, SyntaxError, EOFError, ...
            raise UploadError(400, f"{label} is truncated or corrupt.") from None
    if min(decoded.size) < 1:
        raise UploadError(400, f"{label} has no pixels.")
    return decoded


# --- the model behind the endpoints ------------------------------------------------------------------


class Service:
    """One loaded model; every forward pass runs on one dedicated thread, so requests never oversubscribe
    the cores or interleave with a CAM's hooks."""

    def __init__(self, settings: ServeSettings) -> None:
        import torch

        import graftcv

        if settings.runtime not in RUNTIMES:
            raise GraftcvError(f"Unknown runtime {settings.runtime!r}: choose one of {', '.join(RUNTIMES)}.")
        threads = settings.threads or max(1, os.cpu_count() or 1)
        torch.set_num_threads(threads)
        self.settings = settings
        self.limits = settings.limits.check()
        self.model = graftcv.load(settings.model, device="cpu")  # the PyTorch network: /explain needs it
        runtime = settings.runtime
        if runtime == "auto":
            runtime = "onnx" if isinstance(self.model.meta.get("onnx"), dict) else "torch"
        if runtime == "onnx":
            from graftcv.runtime import open_onnx

            self.model.runner, onnx_meta = open_onnx(settings.model, threads=threads)
            self.model.meta = onnx_meta
        self.runtime = runtime
        self.draft_size = decode_size(self.model.data_config)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graftcv-model")
        side = self.draft_size
        self.model.predict([Image.new("RGB", (side, side))])  # warm-up: the first request is not the slow one

    async def on_model_thread(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: function(*args, **kwargs))

    async def read_images(self, uploads: list[UploadFile]) -> list[Image.Image]:
        if len(uploads) > self.limits.max_files:
            raise UploadError(413, f"Send at most {self.limits.max_files} files per request, not {len(uploads)}.")
        payloads = []
        for index, upload in enumerate(uploads):
            check_content_type(index, upload)
            payloads.append((await upload.read(), _label(index, upload)))
        return await run_in_threadpool(
            lambda: [decode_image(data, label, self.limits, self.draft_size) for data, label in payloads]
        )

    def metadata(self) -> Metadata:
        meta = self.model.meta
        metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
        return Metadata(
            classes=self.model.classes,
            backbone=meta["backbone"],
            strategy=meta.get("strategy"),
            head=meta.get("head"),
            metrics={k: float(v) if isinstance(v, int | float) else None for k, v in metrics.items()},
            input_size=list(self.model.data_config["input_size"]),
            runtime=self.runtime,
            onnx=meta.get("onnx") if isinstance(meta.get("onnx"), dict) else None,
            explain_methods=list(SERVE_CAM_METHODS),
            limits=asdict(self.limits),
        )


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _sentence(text: str) -> str:
    """The first sentence of `text`, ending with a full stop."""
    first = " ".join(str(text).split()).split(". ")[0].strip().rstrip(".")
    return f"{first or 'The request could not be handled'}."


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _install_error_handlers(app: FastAPI, limits: Limits) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, error: UploadError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(GraftcvError)
    async def graftcv_error(request: Request, error: GraftcvError) -> JSONResponse:
        return _error(400, _sentence(str(error)))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return _error(413, _too_large(limits.max_body_bytes))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail, status = str(error.detail), error.status_code
        if status == 413 or request.scope.get(TOO_LARGE):  # FastAPI reports a stopped parse as a 400
            status, detail = 413, _too_large(limits.max_body_bytes)
        elif detail.startswith("Too many files"):  # Starlette's multipart parser stopped counting
            status, detail = 413, f"Send at most {limits.max_files} files per request."
        elif status == 404:
            detail = "There is no such endpoint; see /docs."
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs."
        elif status == 400 and "parsing the body" in detail:
            detail = "The multipart/form-data body is malformed."
        return JSONResponse({"error": _sentence(detail)}, status_code=status, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ())]
        where = f"{location[0]} parameter '{'.'.join(location[1:])}'" if len(location) > 1 else "request"
        reason = str(first.get("msg", "invalid")).rstrip(".")
        return _error(422, f"The {where} is invalid ({reason[:200]}).")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "The server failed on this request; it has been logged.")


def _multipart_only(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UploadError(415, "Send the images as multipart/form-data, e.g. curl -F files=@photo.jpg.")


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI application for one model; loads it (and warms it up) before returning."""
    service = Service(settings)
    limits = service.limits
    app = FastAPI(
        title="graftcv",
        summary=f"{service.model.meta['backbone']} classifier: {', '.join(service.model.classes[:10])}",
        version=_version(),
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.state.service = service
    _install_error_handlers(app, limits)
    upload = [Depends(_multipart_only)]

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness: the model is loaded and the service answers."""
        return Health(status="ok")

    @app.get("/metadata", response_model=Metadata)
    async def metadata() -> Metadata:
        """Classes, backbone, validation metrics, input size, runtime and limits."""
        return service.metadata()

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_by_alias=True,
        responses=ERRORS,
        dependencies=upload,
    )
    async def predict(
        files: Annotated[list[UploadFile], File(description="One or several images (JPEG, PNG, WebP, ...).")],
        topk: Annotated[int, Query(ge=1, le=1000, description="Classes to return per image.")] = 3,
    ) -> PredictResponse:
        """Top-k classes with probabilities for each uploaded image, in upload order."""
        images = await service.read_images(files)
        results = await service.on_model_thread(service.model.predict, images, topk=topk)
        return PredictResponse(
            predictions=[
                Prediction(filename=upload.filename, **{k: v for k, v in result.items() if k != "path"})
                for upload, result in zip(files, results, strict=True)
            ]
        )

    @app.post(
        "/explain",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "The CAM blended onto the image."}, **ERRORS},
        dependencies=upload,
    )
    async def explain(
        file: Annotated[UploadFile, File(description="One image.")],
        target: Annotated[
            str | None, Query(max_length=200, description="The class to explain (default: the predicted one).")
        ] = None,
        method: Annotated[str, Query(max_length=40, description=", ".join(SERVE_CAM_METHODS))] = "gradcam",
    ) -> Response:
        """A PNG overlay of the class activation map on the image as the network saw it."""
        if method not in SERVE_CAM_METHODS:
            raise UploadError(400, f"Unknown CAM method {method[:40]!r}: choose one of {', '.join(SERVE_CAM_METHODS)}.")
        if target is not None and target not in service.model.classes:
            raise UploadError(
                400, f"Unknown class {target[:60]!r}: choose one of {', '.join(service.model.classes[:20])}."
            )
        (image,) = await service.read_images([file])
        (result,) = await service.on_model_thread(
            service.model.explain, [image], method=method, target=target or "pred"
        )
        from graftcv.explain.render import overlay

        png = await run_in_threadpool(lambda: _png(overlay(result.image, result.cam)))
        headers = {
            "X-Graftcv-Predicted": quote(result.predicted),
            "X-Graftcv-Probability": f"{result.probability:.6f}",
            "X-Graftcv-Target": quote(result.target),
        }
        return Response(png, media_type="image/png", headers=headers)

    return app


def _version() -> str:
    import graftcv

    return graftcv.__version__


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker process (`--workers N`)."""
    return create_app(ServeSettings.from_json(os.environ[CONFIG_ENV]))


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Load the model (a bad artifact fails here, as a GraftcvError) and serve it with uvicorn until stopped."""
    import uvicorn

    if workers < 1:
        raise GraftcvError("--workers must be at least 1.")
    if not 0 <= port <= 65535:
        raise GraftcvError(f"--port {port} is not a TCP port number.")
    if host not in LOOPBACK:
        log.warning("Serving on %s: the service has no authentication, so anyone who can reach it may use it.", host)
    cores = os.cpu_count() or 1
    settings = ServeSettings(
        settings.model, settings.runtime, settings.limits, settings.threads or max(1, cores // workers)
    )
    app = create_app(settings)  # in this process too: a broken model is one error line, before any worker starts
    log.info(
        "Serving %s (%s) on http://%s:%d, docs at /docs.", Path(settings.model), app.state.service.runtime, host, port
    )
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    del app
    os.environ[CONFIG_ENV] = settings.to_json()
    extra = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # A worker answers the supervisor's pings only once torch is imported and the model loaded: on a
        # slow machine that takes longer than uvicorn's default 5 s, and it would kill and respawn it for ever.
        extra["timeout_worker_healthcheck"] = 120
    uvicorn.run(
        "graftcv.serve:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="warning", **extra
    )
