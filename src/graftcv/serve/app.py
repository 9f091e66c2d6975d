"""The model behind the endpoints, the FastAPI application for it, and `serve` (uvicorn, one or more workers)."""

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
from fastapi.responses import Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from graftcv.data import decode_size
from graftcv.errors import GraftcvError
from graftcv.serve.docs import install_docs
from graftcv.serve.handlers import install_error_handlers
from graftcv.serve.listen import check_can_listen, url
from graftcv.serve.page import install_page
from graftcv.serve.schemas import ERRORS, Health, Metadata, Prediction, PredictResponse
from graftcv.serve.uploads import BodyLimit, Limits, UploadError, check_content_type, decode_image, upload_label

log = logging.getLogger("graftcv")

CONFIG_ENV = "GRAFTCV_SERVE_CONFIG"  # how `--workers N` hands the settings to each worker process
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_cam_methods() -> list[str]:
    """CAM methods with one or two passes per image; per-channel ones (Score-CAM, Ablation-CAM) run hundreds
    and would let one request hold the model for seconds."""
    from graftcv.explain.methods import user_methods

    return user_methods(fast_only=True)


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs; JSON-serializable so that worker processes can rebuild it."""

    model: str
    runtime: str = "auto"
    limits: Limits = field(default_factory=Limits)
    threads: int | None = None
    tta: str | None = None  # test-time augmentation of every /predict (none | flip | flip-crops; None: the model's)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        return cls(**{**raw, "limits": Limits(**raw["limits"])})


class Service:
    """One loaded model; every forward pass runs on one dedicated thread, so requests never oversubscribe
    the cores or interleave with a CAM's hooks."""

    def __init__(self, settings: ServeSettings) -> None:
        import torch

        import graftcv

        threads = settings.threads or max(1, os.cpu_count() or 1)
        torch.set_num_threads(threads)
        self.settings = settings
        self.limits = settings.limits.check()
        # explainable: an ONNX-run model keeps the PyTorch network too, which /explain needs
        self.model = graftcv.load(
            settings.model, device="cpu", runtime=settings.runtime, threads=threads, explainable=True, tta=settings.tta
        )
        self.runtime = self.model.runtime
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
            payloads.append((await upload.read(), upload_label(index, upload)))
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
            explain_methods=list(serve_cam_methods()),
            limits=asdict(self.limits),
            tasks=meta.get("tasks") if isinstance(meta.get("tasks"), list) else None,
            tta=self.model.tta,
        )


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


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
        docs_url=None,  # install_docs: Swagger UI and ReDoc from local files, so that /docs works offline
        redoc_url=None,
    )
    install_docs(app)
    model = service.model
    install_page(app, model.classes, model.meta["backbone"], limits.max_file_bytes / 2**20, model.tasks is not None)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.state.service = service
    install_error_handlers(app, limits)
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
        method: Annotated[str, Query(max_length=40, description=", ".join(serve_cam_methods()))] = "gradcam",
    ) -> Response:
        """A PNG overlay of the class activation map on the image as the network saw it."""
        allowed = serve_cam_methods()
        if method not in allowed:
            raise UploadError(400, f"Unknown CAM method {method[:40]!r}: choose one of {', '.join(allowed)}.")
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


def _load_in_a_child(settings: ServeSettings) -> str:
    """Load the model once in a short-lived process, as each worker will, and return its runtime: the
    supervisor of the workers never holds a copy of the model (nor torch) for as long as it serves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_loaded_runtime, settings.to_json()).result()
    except BrokenProcessPool:
        raise GraftcvError(f"The process loading {settings.model} died before it finished (out of memory?).") from None


def _loaded_runtime(settings_json: str) -> str:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-8s %(message)s")
    return create_app(ServeSettings.from_json(settings_json)).state.service.runtime


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Check the settings and that the port is free, load the model (a bad artifact fails here), then serve it
    with uvicorn until stopped; every problem found before serving is a GraftcvError, and nothing is printed."""
    import uvicorn

    if workers < 1:
        raise GraftcvError(f"--workers must be at least 1, not {workers}.")
    settings.limits.check()
    check_can_listen(host, port)  # before the model loads: a busy port is one line, and at once
    if host not in LOOPBACK:
        log.warning("Serving on %s: the service has no authentication, so anyone who can reach it may use it.", host)
    cores = os.cpu_count() or 1
    settings = ServeSettings(
        settings.model, settings.runtime, settings.limits, settings.threads or max(1, cores // workers)
    )
    if workers == 1:
        app = create_app(settings)
        log.info(
            "Serving %s (%s) on %s, docs at /docs.", Path(settings.model), app.state.service.runtime, url(host, port)
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    runtime = _load_in_a_child(settings)  # a broken model is one error line, before any worker starts
    log.info(
        "Serving %s (%s) on %s with %d workers, docs at /docs.", Path(settings.model), runtime, url(host, port), workers
    )
    os.environ[CONFIG_ENV] = settings.to_json()
    extra = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # A worker answers the supervisor's pings only once torch is imported and the model loaded: on a
        # slow machine that takes longer than uvicorn's default 5 s, and it would kill and respawn it for ever.
        extra["timeout_worker_healthcheck"] = 120
    uvicorn.run(
        "graftcv.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        **extra,
    )
