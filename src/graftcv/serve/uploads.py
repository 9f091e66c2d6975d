"""What a request may send: size limits, the body-size middleware, and uploads checked and decoded to RGB images."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from fastapi import UploadFile
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graftcv.data.images import to_rgb
from graftcv.errors import GraftcvError

# Decoders a client may reach; Pillow's others (EPS runs Ghostscript, for one) are never tried on uploads.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
TOO_LARGE = "graftcv.body_too_large"  # scope flag: the body parse failed because BodyLimit stopped it


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

    @classmethod
    def from_megabytes(cls, max_files: int, max_file_mb: float, max_pixels: int, max_request_mb: float) -> Limits:
        """Limits from sizes in megabytes (2**20 bytes), as the CLI takes them; checked."""
        for megabytes in (max_file_mb, max_request_mb):
            if not math.isfinite(megabytes) or megabytes <= 0:
                raise GraftcvError(f"A size limit must be a positive number of megabytes, not {megabytes}.")
        return cls(max_files, int(max_file_mb * 2**20), max_pixels, int(max_request_mb * 2**20)).check()


class UploadError(Exception):
    """A request the service refuses: an HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyTooLarge(Exception):
    """Raised from `receive` when a request body without a Content-Length grows past the limit."""


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def too_large(max_bytes: int) -> str:
    return f"The request is larger than the limit of {max_bytes:,} bytes."


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
            await error_response(413, too_large(self.max_bytes))(scope, receive, send)
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


def upload_label(index: int, upload: UploadFile) -> str:
    """How messages name an upload: its position, and its file name when the client sent one."""
    name = (upload.filename or "").replace("\n", " ").strip()[:80]
    return f"file {index + 1} ({name!r})" if name else f"file {index + 1}"


def check_content_type(index: int, upload: UploadFile) -> None:
    """Images, or bytes of no declared type (what curl sends for unknown extensions)."""
    content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise UploadError(415, f"{upload_label(index, upload)} was sent as {content_type[:60]}, not as an image.")


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
            decoded = to_rgb(ImageOps.exif_transpose(image))
            decoded.load()
        except Exception:  # truncated or corrupt pixel data: OSError, ValueError, SyntaxError, EOFError, ...
            raise UploadError(400, f"{label} is truncated or corrupt.") from None
    if min(decoded.size) < 1:
        raise UploadError(400, f"{label} has no pixels.")
    return decoded
