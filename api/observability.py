"""Request ids, request metrics and ``/metrics``: :func:`install_observability`.

Both middlewares are plain ASGI (no ``BaseHTTPMiddleware``): they add a few microseconds per
request and keep context variables visible to the handlers, including sync handlers in the
thread pool.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearing import metrics
from clearing.jobs import QUEUES
from clearing.logs import request_id_var

HEADER = "X-Request-Id"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"
_HEADER_KEY = HEADER.lower().encode("latin-1")
#: Bound on the cached label children of the latency histogram (methods are the caller's).
_MAX_CHILDREN = 1_000


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The last value of the (lower-case) header ``name`` in an ASGI scope, without building
    a dict of every header."""
    found = None
    for key, value in scope.get("headers") or ():
        if key == name:
            found = value
    return found


def incoming_request_id(value: str | None) -> str:
    """The caller's request id if it is a short token, otherwise a new one (32 hex digits)."""
    if value and _ACCEPTED_ID.fullmatch(value):
        return value
    # A version-4 UUID from the process's PRNG (reseeded in every forked worker), not
    # uuid4(): os.urandom releases the GIL, and the event loop then waits for the thread pool
    # to hand it back (milliseconds under load). A request id needs uniqueness, not secrecy.
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


class RequestIdMiddleware:
    """Reads ``X-Request-Id`` (or makes one), sets it for logging and on ``request.state``, and
    returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = header_value(scope, _HEADER_KEY)
        request_id = incoming_request_id(raw.decode("latin-1") if raw else None)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        token = request_id_var.set(request_id)
        # Why not reset on an exception: the server's own error log line, outside the app,
        # should still name the request. The server's task for the request ends with it.
        await self.app(scope, receive, send_with_id)
        request_id_var.reset(token)


class MetricsMiddleware:
    """Observes each HTTP request's latency by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        before = dict(scope)  # routing updates the scope in place
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope, before, search=status[0] != 404)
            self._child(scope["method"], template, str(status[0])).observe(elapsed)

    def _child(self, method: str, template: str, status: str) -> Any:
        """The histogram's child for these labels, looked up once (``labels`` takes a lock)."""
        key = (method, template, status)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= _MAX_CHILDREN:
                self._children.clear()
            child = self._children[key] = metrics.http_request_duration.labels(*key)
        return child


def route_template(scope: Scope, before: Scope, *, search: bool = True) -> str:
    """The matched route's path template (``/v1/notices/{notice_id}``), never the raw path, so
    that label values stay few. Routes name themselves in the scope, behind the prefix of any
    mount they are in; plain routes that do not (``/metrics``, ``/docs``) are found again by
    matching ``before``, the scope as it was before routing (unless ``search`` is false)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return scope.get("root_path", "")[len(before.get("root_path", "")) :] + path
    router = getattr(before.get("app"), "router", None)
    for candidate in getattr(router, "routes", ()) if search else ():
        if candidate.matches(before)[0] is Match.FULL:
            suffix = "/{path}" if isinstance(candidate, Mount) else ""
            return getattr(candidate, "path", UNMATCHED) + suffix
    return UNMATCHED


def metrics_endpoint(_request: Request) -> Response:
    """Prometheus exposition of every metric (all processes in multi-process mode). Sync, so
    that the Redis round trip for queue depths runs in the thread pool, not the event loop."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def _outermost(app: FastAPI, middleware: type[RequestIdMiddleware]) -> None:
    """Wrap ``middleware`` around the whole stack, outside Starlette's server-error layer, so
    that a 500 answer carries the request id and the handler's log line names it, whatever
    middleware (``BaseHTTPMiddleware`` runs the app in another task) is added later."""
    build = app.build_middleware_stack

    def build_with_middleware() -> ASGIApp:
        return middleware(build())

    app.build_middleware_stack = build_with_middleware  # type: ignore[method-assign]


def install_observability(app: FastAPI) -> None:
    """Request ids, request latency metrics, and ``GET /metrics`` on ``app``.

    Call after the app's routes are included; call once (a second call does nothing).
    """
    if getattr(app.state, "observability_installed", False):
        return
    app.state.observability_installed = True
    app.add_middleware(MetricsMiddleware)
    _outermost(app, RequestIdMiddleware)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None:
        metrics.watch_queues(runtime.settings.redis_url, QUEUES)
