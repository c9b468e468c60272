"""Security headers on HTML responses, and HSTS on HTTPS: :func:`install_security_headers`.

HTML responses (the portal and the finance pages) get :data:`api.security.SECURITY_HEADERS`
(CSP, nosniff, frame denial, no referrer) unless the handler set its own value. Every response
gets ``Strict-Transport-Security`` when the request came over HTTPS (``scope["scheme"]``, which
uvicorn takes from ``X-Forwarded-Proto`` behind a trusted proxy) or the public base URL is
HTTPS (TLS ends at a proxy that does not forward the scheme).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.security import SECURITY_HEADERS

HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Adds the security headers a response lacks."""

    def __init__(self, app: ASGIApp, *, always_https: bool = False, hsts: str = HSTS) -> None:
        self.app, self.always_https, self.hsts = app, always_https, hsts
        self._html = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.always_https or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._add(list(message.get("headers") or ()), https)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _add(self, headers: list[tuple[bytes, bytes]], https: bool) -> list[tuple[bytes, bytes]]:
        content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
        extra = self._html if content_type.startswith(b"text/html") else []
        if not extra and not https:
            return headers  # an API answer over plain HTTP: nothing to add
        present = {name.lower() for name, _ in headers}
        if https:
            extra = [*extra, (b"strict-transport-security", self.hsts.encode())]
        return headers + [(name, value) for name, value in extra if name not in present]


def install_security_headers(app: FastAPI, *, always_https: bool | None = None) -> None:
    """Add the security headers to ``app``'s responses. ``always_https`` defaults to whether
    the runtime's public base URL is HTTPS."""
    if always_https is None:
        runtime = getattr(app.state, "runtime", None)
        base = runtime.settings.public_base_url if runtime is not None else ""
        always_https = base.startswith("https://")
    app.add_middleware(SecurityHeadersMiddleware, always_https=always_https)
