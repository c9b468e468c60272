"""Dependencies of the routers: the runtime, the per-request transaction, authentication with
scopes, and Idempotency-Key handling.

Order for a POST: authenticate (own short transaction) -> claim the Idempotency-Key (own
committed transaction) -> the request's transaction, which commits before the response is sent
(``scope="function"``). If the work or its commit fails, the claim is released.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ReplayResponse
from api.runtime import Runtime
from clearing.db import run_in_transaction, transaction
from notices import idempotency
from notices.departments import Principal, authenticate
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


def view_context(request: Request) -> ViewContext:
    """What response rendering needs: vault, public URL, today's Asia/Shanghai date."""
    runtime = get_runtime(request)
    return ViewContext(get_vault(request), runtime.settings.public_base_url, today_in_shanghai())


def db_session(request: Request) -> Iterator[Session]:
    """One request, one transaction: commits when the handler returns, before the response."""
    with transaction(get_runtime(request).sessions) as session:
        yield session


def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """The calling department, from ``Authorization: Bearer <key>`` (401 otherwise)."""
    bearer = credentials.credentials if credentials is not None else None
    return run_in_transaction(
        get_runtime(request).sessions, lambda session: authenticate(session, bearer)
    )


def require(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that authenticates and insists on ``scope`` (403 otherwise)."""

    def dependency(who: Principal = Depends(principal)) -> Principal:
        who.require(scope)
        return who

    return dependency


can_read = require("notices:read")
can_write = require("notices:write")


async def idempotency_claim(
    request: Request,
    who: Principal = Depends(can_write),
    key: str | None = Header(
        None, alias=idempotency.HEADER, description="Makes a retried POST safe; kept 24 hours"
    ),
) -> AsyncIterator[idempotency.Claim | None]:
    """Claim the request's Idempotency-Key, replay a finished one, or go on without a key."""
    if key is None:
        yield None
        return
    sessions = get_runtime(request).sessions
    request_hash = idempotency.fingerprint(request.method, request.url.path, await request.body())
    outcome = await run_in_threadpool(
        idempotency.claim, sessions, who.department_id, key, request_hash
    )
    if isinstance(outcome, idempotency.Replay):
        raise ReplayResponse(outcome.status, outcome.body)
    try:
        yield outcome
    except BaseException:
        await run_in_threadpool(idempotency.release, sessions, outcome)
        raise


def write_session(
    request: Request,
    _claim: idempotency.Claim | None = Depends(idempotency_claim, scope="function"),
) -> Iterator[Session]:
    """The request's transaction for a POST: opened only after the Idempotency-Key is claimed."""
    with transaction(get_runtime(request).sessions) as session:
        yield session


Reader = Annotated[Principal, Depends(can_read)]
Writer = Annotated[Principal, Depends(can_write)]
ReadSession = Annotated[Session, Depends(db_session, scope="function")]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]
IdemClaim = Annotated[idempotency.Claim | None, Depends(idempotency_claim, scope="function")]
View = Annotated[ViewContext, Depends(view_context)]
