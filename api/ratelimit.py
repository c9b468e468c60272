"""A request rate limit per API key: :func:`install_rate_limit`.

A token bucket (:class:`api.security.RateLimiter`) per key, ``FEISHUI_API_RATE`` requests per
period (``"100/1s"``), bursts up to the same number. Over the limit: 429 problem+json with
``Retry-After`` (whole seconds, rounded up).

The bucket is named by the key's public prefix plus a short digest of the whole key, so that
someone who knows only a prefix (it appears in logs and listings) cannot spend the key owner's
tokens with made-up secrets. Requests without a bearer token are not limited here (the portal
has its own limit per client); a malformed bearer token is limited per client address.

With ``FEISHUI_REDIS_URL`` set, the buckets live in Redis
(:class:`api.shared_ratelimit.SharedRateLimiter`), so the limit holds across all API
processes; without it (the embedded default, one process) they are in memory.
"""

from __future__ import annotations

import hashlib
import math
import re

import anyio
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem
from api.observability import header_value
from api.security import RateLimiter
from api.shared_ratelimit import SharedRateLimiter, make_limiter
from clearing.errors import ConfigurationError

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_KEY = re.compile(r"(fs_[a-z][a-z0-9]{0,15}|fsu)_([0-9a-f]{8})_[A-Za-z0-9_-]+")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str) -> tuple[int, float] | None:
    """``"100/1s"`` -> ``(100, 1.0)``; also ``"600/1m"``, ``"5/s"``. Empty -> None (no limit)."""
    if not value or not value.strip():
        return None
    match = _RATE.fullmatch(value)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"rate must look like '100/1s' or '600/1m', not {value!r}")
    period = float(match.group(2) or 1) * _UNITS[match.group(3) or "s"]
    if period <= 0:
        raise ValueError(f"rate period must be positive: {value!r}")
    return int(match.group(1)), period


def bucket_name(authorization: str | None, client: str | None) -> str | None:
    """The bucket a request draws from, or None when this limit does not apply."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    match = _KEY.fullmatch(token)
    if not match:
        return f"client:{client or 'unknown'}"
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    return f"{match.group(1)}:{match.group(2)}:{digest}"


class RateLimitMiddleware:
    """Refuses a key's requests over its rate with 429 and ``Retry-After``."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter | SharedRateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        raw = header_value(scope, b"authorization")
        auth = raw.decode("latin-1") if raw else None
        client = scope.get("client")
        bucket = bucket_name(auth, client[0] if client else None)
        wait = 0.0
        if bucket and getattr(self.limiter, "shared", False):  # a Redis round trip: off the loop
            wait = await anyio.to_thread.run_sync(self.limiter.hit, bucket)
        elif bucket:
            wait = self.limiter.hit(bucket)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait)))
        response = problem(
            Request(scope),
            429,
            "rate-limited",
            f"too many requests for this API key; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )
        await response(scope, receive, send)


def install_rate_limit(
    app: FastAPI, rate: str | None = None, limiter: RateLimiter | SharedRateLimiter | None = None
) -> RateLimiter | SharedRateLimiter | None:
    """Limit each API key to ``rate`` (default: the runtime's ``FEISHUI_API_RATE``).

    Returns the limiter (None when the rate is empty: no limit). Call once.
    """
    if limiter is None:
        if rate is None:
            rate = app.state.runtime.settings.api_rate
        try:
            parsed = parse_rate(rate)
        except ValueError as exc:
            raise ConfigurationError(f"FEISHUI_API_RATE: {exc}", field="api_rate") from None
        if parsed is None:
            return None
        limiter = make_limiter(*parsed, "api", app.state.runtime.settings.redis_url)
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return limiter
