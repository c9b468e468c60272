"""Dependencies of the routers: the runtime, the per-request transaction, authentication with
scopes, and Idempotency-Key handling.

Order for a POST: authenticate (a key looked up in the last few seconds is trusted, see
:func:`notices.departments.authenticate_cached`; otherwise its own short transaction) -> claim
the Idempotency-Key (own committed transaction) -> the request's transaction, which commits
before the response is sent. If the work or its commit fails, the claim is released. The
notices API does the claim, the work and the commit in one trip to the thread pool
(:meth:`NoticeWriter.run`); other POSTs use :data:`WriteSession` (``scope="function"``).

Dependencies that do no I/O are ``async`` so that they run on the event loop instead of taking
a trip through the thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ReplayResponse
from api.runtime import Runtime
from clearing.db import transaction
from notices import idempotency
from notices.departments import Principal, authenticate_cached, authenticate_from_cache
from notices.privacy import PayerVault
from notices.service import today_in_shanghai
from notices.views import ViewContext

T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False, description="A department API key: fs_live_…")


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was built with."""
    return request.app.state.runtime


def get_vault(request: Request) -> PayerVault:
    """The payers' personal-data vault, built once per app."""
    return request.app.state.vault


def make_view(request: Request) -> ViewContext:
    """What response rendering needs: vault, public URL, today's Asia/Shanghai date."""
    settings = get_runtime(request).settings
    return ViewContext(get_vault(request), settings.public_base_url, today_in_shanghai())


async def view_context(request: Request) -> ViewContext:
    """:func:`make_view` as a dependency."""
    return make_view(request)


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
    return await _authenticate(request, credentials)


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
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
class Write:
    """A POST's unit of work: the caller, its Idempotency-Key claim and the transaction."""

    who: Principal
    claim: idempotency.Claim | None
    session: Session


@dataclass(frozen=True)
class Claimed:
    """Who is calling, and the Idempotency-Key claimed for the request (None without a key)."""

    who: Principal
    claim: idempotency.Claim | None
    sessions: sessionmaker[Session]


@dataclass(frozen=True)
class NoticeWriter:
    """An authenticated ``notices:write`` caller and the request's Idempotency-Key (if any).

    :meth:`run` claims the key, does the work in the request's transaction and commits it,
    before the response is sent.
    """

    who: Principal
    key: str | None
    request_hash: str | None
    sessions: sessionmaker[Session]

    async def run(self, work: Callable[[Write], T]) -> T:
        """Claim the key (own committed transaction; a finished request is replayed), then run
        ``work`` in one transaction and commit; release the claim if the work or commit fails.

        Why one function in the thread pool: a trip there costs the event loop about as much
        as the work itself, and a dependency chain with ``yield`` would take three.
        """
        return await run_in_threadpool(self._run, work)

    def _run(self, work: Callable[[Write], T]) -> T:
        claim = None
        if self.key is not None:
            assert self.request_hash is not None
            outcome = idempotency.claim(
                self.sessions, self.who.department_id, self.key, self.request_hash
            )
            if isinstance(outcome, idempotency.Replay):
                raise ReplayResponse(outcome.status, outcome.body)
            claim = outcome
        try:
            with transaction(self.sessions) as session:
                return work(Write(self.who, claim, session))
        except BaseException:
            if claim is not None:
                idempotency.release(self.sessions, claim)
            raise


async def writer(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    key: str | None = Header(
        None, alias=idempotency.HEADER, description="Makes a retried POST safe; kept 24 hours"
    ),
) -> NoticeWriter:
    """A ``notices:write`` caller and its Idempotency-Key, as one dependency without ``yield``.

    Why not the chain (principal, scope, claim): FastAPI resolves every node of it on every
    request, and that cost as much CPU as issuing the notice itself. The key is claimed in
    :meth:`NoticeWriter.run`, after the body has been validated.
    """
    who = await _authenticate(request, credentials)
    who.require("notices:write")
    sessions = get_runtime(request).sessions
    if key is None:
        return NoticeWriter(who, None, None, sessions)
    idempotency.check_key(key)
    request_hash = idempotency.fingerprint(request.method, request.url.path, await request.body())
    return NoticeWriter(who, key, request_hash, sessions)


async def idempotency_claim(
    request: Request,
    who: Principal = Depends(can_write),
    key: str | None = Header(
        None, alias=idempotency.HEADER, description="Makes a retried POST safe; kept 24 hours"
    ),
) -> AsyncIterator[Claimed]:
    """Claim the request's Idempotency-Key, replay a finished one, or go on without a key."""
    claimed = await _claim(request, who, key)
    try:
        yield claimed
    except BaseException:
        await _release(claimed)
        raise


async def _claim(request: Request, who: Principal, key: str | None) -> Claimed:
    """Claim ``key`` (its own committed transaction); raise :class:`ReplayResponse` for a
    finished request with the same key."""
    sessions = get_runtime(request).sessions
    if key is None:
        return Claimed(who, None, sessions)
    request_hash = idempotency.fingerprint(request.method, request.url.path, await request.body())
    outcome = await run_in_threadpool(
        idempotency.claim, sessions, who.department_id, key, request_hash
    )
    if isinstance(outcome, idempotency.Replay):
        raise ReplayResponse(outcome.status, outcome.body)
    return Claimed(who, outcome, sessions)


async def _release(claimed: Claimed) -> None:
    """Forget the claim of a request whose work or commit failed, so that a retry can run."""
    if claimed.claim is not None:
        await run_in_threadpool(idempotency.release, claimed.sessions, claimed.claim)


def write_session(
    request: Request,
    _claimed: Claimed = Depends(idempotency_claim, scope="function"),
) -> Iterator[Session]:
    """The request's transaction for a POST: opened only after the Idempotency-Key is claimed."""
    with transaction(get_runtime(request).sessions) as session:
        yield session


Reader = Annotated[Principal, Depends(can_read)]
Writer = Annotated[Principal, Depends(can_write)]
ReadSession = Annotated[Session, Depends(db_session, scope="function")]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]
#: A POST of the department API: the writer and its Idempotency-Key; see :meth:`NoticeWriter.run`.
Unit = Annotated[NoticeWriter, Depends(writer)]
View = Annotated[ViewContext, Depends(view_context)]
