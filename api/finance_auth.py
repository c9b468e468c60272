"""Authentication of finance users over HTTP: API tokens, the web session cookie, CSRF, and a
limit on failed logins.

- ``Authorization: Bearer fsu_…`` (scripts). A department key (``fs_live_…``) is refused with
  403: departments never reach finance endpoints, whatever their scopes.
- The ``fs_session`` cookie (the finance pages). A state-changing request authenticated by the
  cookie must also carry the CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field)
  equal to the ``fs_csrf`` cookie (double submit, :mod:`api.security`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import get_runtime
from api.security import CSRF_COOKIE, CSRF_FIELD, csrf_ok
from api.shared_ratelimit import make_blocks, make_limiter
from clearing.db import run_in_transaction
from clearing.errors import FeishuiError, Forbidden, Unauthorized
from reconciliation import users
from reconciliation.users import FinanceUser

SESSION_COOKIE = "fs_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="A finance user token: fsu_…")


class TooManyAttempts(FeishuiError):
    type = "too-many-attempts"
    status = 429


class LoginGuard:
    """Failed logins per user name and per client address, counted by the token buckets of
    :class:`RateLimiter` (in Redis, shared by every API process, when it is configured): the
    ``max_failures``-th failure in a burst blocks further logins for that key, unchecked, until
    the bucket has a token again (about ``per / (max_failures - 1)`` seconds; a bucket refills
    completely in ``per`` seconds)."""

    def __init__(
        self, max_failures: int = 5, per: float = 300.0, redis_url: str | None = None
    ) -> None:
        self.limiter = make_limiter(max(1, max_failures - 1), per, "login", redis_url)
        self.blocks = make_blocks("login-blocked", redis_url)

    def check(self, *keys: str) -> None:
        wait = max((self.blocks.remaining(k) for k in keys), default=0.0)
        if wait > 0:
            raise TooManyAttempts(f"too many failed logins; try again in {int(wait) + 1} s")

    def failed(self, *keys: str) -> None:
        for key in keys:
            wait = self.limiter.hit(key)
            if wait:
                self.blocks.block(key, wait)


def login_guard(request: Request) -> LoginGuard:
    """The app's guard, created on first use."""
    guard = getattr(request.app.state, "finance_login_guard", None)
    if guard is None:
        redis_url = get_runtime(request).settings.redis_url
        guard = request.app.state.finance_login_guard = LoginGuard(redis_url=redis_url)
    return guard


def _csrf_secret(request: Request) -> str:
    return get_runtime(request).settings.secret("secret_key")


async def _check_csrf(request: Request) -> None:
    token = request.headers.get(CSRF_HEADER)
    if token is None and "form" in request.headers.get("content-type", ""):
        token = str((await request.form()).get(CSRF_FIELD) or "")
    if not csrf_ok(_csrf_secret(request), request.cookies.get(CSRF_COOKIE), token):
        raise Forbidden("the CSRF token is missing or wrong")


async def finance_user(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> FinanceUser:
    """The finance user calling, by API token or session cookie (401 otherwise)."""
    sessions = get_runtime(request).sessions
    if credentials is not None:
        token = credentials.credentials
        if token.startswith("fs_"):
            raise Forbidden("department API keys cannot use the finance API")
        return await run_in_threadpool(
            run_in_transaction, sessions, lambda s: users.authenticate(s, token, kind="api")
        )
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthorized("log in at /finance/login or send 'Authorization: Bearer fsu_…'")
    user = await run_in_threadpool(
        run_in_transaction, sessions, lambda s: users.authenticate(s, cookie, kind="session")
    )
    if request.method not in SAFE_METHODS:
        await _check_csrf(request)
    return user


def finance_writer(user: FinanceUser = Depends(finance_user)) -> FinanceUser:
    """A finance user allowed to change things (403 for auditors)."""
    user.require_write()
    return user


FinanceReader = Annotated[FinanceUser, Depends(finance_user)]
FinanceWriter = Annotated[FinanceUser, Depends(finance_writer)]
