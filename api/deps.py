"""Dependencies of the routers: the runtime, the per-request transaction, authentication with
scopes, and Idempotency-Key handling.

Order for a POST: authenticate (a key looked up in the last few seconds is trusted, see
:func:`notices.departments.authenticate_cached`; otherwise its own short transaction) -> claim
the Idempotency-Key (own committed transaction) -> the request's transaction, which commits
before the response is sent (``scope="function"``). If the work or its commit fails, the claim
is released.

Dependencies that do no I/O are ``async`` so that they run on the event loop instead of taking
a trip through the thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ReplayResponse
from api.runtime import Runtime
from clearing.db import transaction
from notices import idempotency
from notices.departments import Principal, authenticate_cached, authenticate_from_cache
from notices.privacy import PayerVault
from notices.service import today_in_shanghai
from notices.views import ViewContext

_bearer = HTTPBearer(auto_error=False, description="A department API key: fs_live_…")


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was built with."""
    return request.app.state.runtime


def get_vault(request: Request) -> PayerVault:
    """The payers' personal-data vault, built once per app."""
    return request.app.state.vault


async def view_context(request: Request) -> ViewContext:
    """What response rendering needs: vault, public URL, today's Asia/Shanghai date."""
    settings = get_runtime(request).settings
    return ViewContext(get_vault(request), settings.public_base_url, today_in_shanghai())


def db_session(request: Request) -> Iterator[Session]:
    """One request, one transaction: commits when the handler returns, before the response."""
    with transaction(get_runtime(request).sessions) as session:
        yield session


async def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """The calling department, from ``Authorization: Bearer <key>`` (401 otherwise).

    A key in the cache is checked on the event loop; only a look-up goes to the thread pool.
    """
    bearer = credentials.credentials if credentials is not None else None
    sessions = get_runtime(request).sessions
    who = authenticate_from_cache(sessions, bearer)
    if who is None:
        who = await run_in_threadpool(authenticate_cached, sessions, bearer)
    return who


def require(scope: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that authenticates and insists on ``scope`` (403 otherwise)."""

    async def dependency(who: Principal = Depends(principal)) -> Principal:
        who.require(scope)
        return who

    return dependency


can_read = require("notices:read")
can_write = require("notices:write")


@dataclass(frozen=True)
class Claimed:
    """Who is calling, and the Idempotency-Key claimed for the request (None without a key)."""

    who: Principal
    claim: idempotency.Claim | None


@dataclass(frozen=True)
class Write:
    """A POST's unit of work: the caller, its Idempotency-Key claim and the transaction."""

    who: Principal
    claim: idempotency.Claim | None
    session: Session


async def idempotency_claim(
    request: Request,
    who: Principal = Depends(can_write),
    key: str | None = Header(
        None, alias=idempotency.HEADER, description="Makes a retried POST safe; kept 24 hours"
    ),
) -> AsyncIterator[Claimed]:
    """Claim the request's Idempotency-Key, replay a finished one, or go on without a key."""
    if key is None:
        yield Claimed(who, None)
        return
    sessions = get_runtime(request).sessions
    request_hash = idempotency.fingerprint(request.method, request.url.path, await request.body())
    outcome = await run_in_threadpool(
        idempotency.claim, sessions, who.department_id, key, request_hash
    )
    if isinstance(outcome, idempotency.Replay):
        raise ReplayResponse(outcome.status, outcome.body)
    try:
        yield Claimed(who, outcome)
    except BaseException:
        await run_in_threadpool(idempotency.release, sessions, outcome)
        raise


def write_session(
    request: Request,
    _claimed: Claimed = Depends(idempotency_claim, scope="function"),
) -> Iterator[Session]:
    """The request's transaction for a POST: opened only after the Idempotency-Key is claimed."""
    with transaction(get_runtime(request).sessions) as session:
        yield session


def write_unit(
    request: Request,
    claimed: Claimed = Depends(idempotency_claim, scope="function"),
) -> Iterator[Write]:
    """:func:`write_session` with the caller and the claim: one dependency instead of three.

    FastAPI walks every occurrence of a sub-dependency on every request, so a handler taking
    the caller, the claim and the session separately pays for the authentication chain thrice.
    """
    with transaction(get_runtime(request).sessions) as session:
        yield Write(claimed.who, claimed.claim, session)


Reader = Annotated[Principal, Depends(can_read)]
Writer = Annotated[Principal, Depends(can_write)]
ReadSession = Annotated[Session, Depends(db_session, scope="function")]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]
Unit = Annotated[Write, Depends(write_unit, scope="function")]
View = Annotated[ViewContext, Depends(view_context)]
