"""Every error the service answers, as a JSON body with one sentence: refused uploads, bad input, anything else."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graftcv.errors import GraftcvError
from graftcv.serve.uploads import TOO_LARGE, BodyTooLarge, Limits, UploadError, error_response, too_large

log = logging.getLogger("graftcv")


def first_sentence(text: str) -> str:
    """The first sentence of `text`, ending with a full stop."""
    first = " ".join(str(text).split()).split(". ")[0].strip().rstrip(".")
    return f"{first or 'The request could not be handled'}."


def install_error_handlers(app: FastAPI, limits: Limits) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, error: UploadError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(GraftcvError)
    async def graftcv_error(request: Request, error: GraftcvError) -> JSONResponse:
        return error_response(400, first_sentence(str(error)))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return error_response(413, too_large(limits.max_body_bytes))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail, status = str(error.detail), error.status_code
        if status == 413 or request.scope.get(TOO_LARGE):  # FastAPI reports a stopped parse as a 400
            status, detail = 413, too_large(limits.max_body_bytes)
        elif detail.startswith("Too many files"):  # Starlette's multipart parser stopped counting
            status, detail = 413, f"Send at most {limits.max_files} files per request."
        elif status == 404:
            detail = "There is no such endpoint; see /docs."
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs."
        elif status == 400 and "parsing the body" in detail:
            detail = "The multipart/form-data body is malformed."
        headers = getattr(error, "headers", None)
        return JSONResponse({"error": first_sentence(detail)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ())]
        where = f"{location[0]} parameter '{'.'.join(location[1:])}'" if len(location) > 1 else "request"
        reason = str(first.get("msg", "invalid")).rstrip(".")
        return error_response(422, f"The {where} is invalid ({reason[:200]}).")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "The server failed on this request; it has been logged.")
