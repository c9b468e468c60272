"""Every error the API returns is ``application/problem+json`` (RFC 9457).

``type`` is a stable URI per kind of problem, ``title`` a fixed summary of that kind, ``detail``
a sentence about this occurrence, and ``errors`` lists ``{field, detail}`` pairs when specific
fields are at fault.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clearing.errors import FeishuiError
from notices.schemas import describe_errors

PROBLEM_BASE = "https://feishui.dev/problems/"
MEDIA_TYPE = "application/problem+json"
TITLES = {
    "validation-error": "The request is not valid",
    "invalid-amount": "An amount is not valid",
    "invalid-payment-code": "A payment code is not valid",
    "invalid-split": "Treasury shares are not valid",
    "idempotency-key-reused": "The Idempotency-Key was used with a different request",
    "idempotency-in-progress": "A request with this Idempotency-Key is in progress",
    "unauthorized": "Authentication is required",
    "forbidden": "The API key does not allow this",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "conflict": "The request conflicts with the current state",
    "internal-error": "Internal error",
    "rate-limited": "Too many requests",
}
_HTTP_TYPES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    422: "validation-error",
}
_LOCATIONS = {"body", "query", "path", "header", "cookie"}
log = logging.getLogger("feishui.api")


class ReplayResponse(Exception):
    """Answer with a stored response (an idempotent replay) instead of running the handler."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def problem(
    request: Request,
    status: int,
    type_: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Render one problem."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": TITLES.get(type_, HTTPStatus(status).phrase),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="feishui"'}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def _feishui(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FeishuiError)
    if exc.status >= 500:
        log.error("server-side problem %s: %s", exc.type, exc.detail)
        return problem(request, exc.status, "internal-error", "the server could not do this")
    errors = [{"field": exc.field, "detail": exc.detail}] if exc.field else None
    return problem(request, exc.status, exc.type, exc.detail, errors)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = [dict(e, loc=_strip_location(e.get("loc", ()))) for e in exc.errors()]
    errors = [e.model_dump() for e in describe_errors(raw)]
    for error, source in zip(errors, raw, strict=True):
        if source.get("type") == "json_invalid":
            error.update(field=None, detail="the request body is not valid JSON")
    fields = ", ".join(sorted({e["field"] for e in errors if e["field"]}))
    detail = f"invalid fields: {fields}" if fields else errors[0]["detail"]
    return problem(request, 422, "validation-error", detail, errors)


def _strip_location(loc: Any) -> tuple[Any, ...]:
    loc = tuple(loc)
    return loc[1:] if loc and loc[0] in _LOCATIONS else loc


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = _HTTP_TYPES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else None
    return problem(request, exc.status_code, type_, detail, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "internal-error", "the server could not do this")


async def _replay(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReplayResponse)
    return JSONResponse(exc.body, status_code=exc.status, headers={"Idempotent-Replayed": "true"})


def install(app: FastAPI) -> None:
    """Register the problem+json handlers (and the idempotent replay) on ``app``."""
    app.add_exception_handler(FeishuiError, _feishui)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ReplayResponse, _replay)
    app.add_exception_handler(Exception, _unexpected)
