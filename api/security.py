"""Edge security for the portal: CSRF tokens, a per-client rate limit, security headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

CSRF_COOKIE = "fs_csrf"
CSRF_FIELD = "csrf_token"


def new_csrf_token(secret_key: str) -> str:
    """A random token bound to the server's secret: ``<nonce>.<hmac>``."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(secret_key, nonce)}"


def csrf_ok(secret_key: str, cookie: str | None, form: str | None) -> bool:
    """Double submit: the form's token equals the cookie's, and the server made it."""
    if not cookie or not form or not hmac.compare_digest(cookie, form):
        return False
    nonce, _, mac = cookie.partition(".")
    return bool(nonce) and hmac.compare_digest(mac, _mac(secret_key, nonce))


def _mac(secret_key: str, nonce: str) -> str:
    return hmac.new(secret_key.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


class RateLimiter:
    """A token bucket per client: ``rate`` requests per ``per`` seconds, bursts up to ``rate``.

    In memory, per process (each API process limits on its own); bounded to ``max_clients``
    buckets, dropping the least recently seen.
    """

    def __init__(
        self,
        rate: int,
        per: float,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.per, self.max_clients, self.clock = rate, per, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, client: str) -> float:
        """Take one token; returns 0 if allowed, else the seconds until a token is free."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(client, (self.rate, now))
            tokens = min(self.rate, tokens + (now - last) * self.rate / self.per)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) * self.per / self.rate
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' "
        "'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
        "form-action 'self' http: https:; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
