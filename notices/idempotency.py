"""``Idempotency-Key`` for the department API's POSTs, per department, kept 24 hours.

1. :func:`claim` inserts the key as ``in_progress`` in its own short, committed transaction
   *before* the work starts; the unique ``(department_id, key)`` lets exactly one request win.
2. The winner does the work and :func:`complete` stores its response in the *same* transaction
   as the work: either both commit or neither does.
3. If the work fails, :func:`release` deletes the claim so that a retry can run.

A later request with the same key gets the stored response (:class:`Replay`) when its body is
the same, a 422 when it differs, and a 409 while the first is still running. A claim left
``in_progress`` by a crashed process is taken over after :data:`LEASE`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clearing.db import run_in_transaction
from clearing.errors import Conflict, ValidationError
from notices.models import IdempotencyKey

TTL = timedelta(hours=24)
LEASE = timedelta(minutes=5)
HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class IdempotencyKeyReused(ValidationError):
    """The key was already used with a different request."""

    type = "idempotency-key-reused"


class RequestInProgress(Conflict):
    """The first request with this key has not finished yet."""

    type = "idempotency-in-progress"


@dataclass(frozen=True)
class Claim:
    """This request owns the key: do the work, then :func:`complete` (or :func:`release`)."""

    id: int
    claimed_at: datetime


@dataclass(frozen=True)
class Replay:
    """The key was used before with the same request: answer with the stored response."""

    status: int
    body: Any


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of the method, path and body; JSON bodies are canonicalised first."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(method.encode() + b"\n" + path.encode() + b"\n" + canonical).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` if it is 1-255 printable ASCII characters, else a 422."""
    if not _KEY.fullmatch(key):
        raise ValidationError(
            "Idempotency-Key must be 1-255 printable ASCII characters", field=HEADER
        )
    return key


def claim(
    sessions: sessionmaker[Session],
    department_id: int,
    key: str,
    request_hash: str,
    *,
    now: datetime | None = None,
) -> Claim | Replay:
    """Claim ``key`` for a new request (committed at once), or say how to answer a repeat."""
    check_key(key)
    moment = now or datetime.now(UTC)
    return run_in_transaction(
        sessions, lambda s: _claim(s, department_id, key, request_hash, moment)
    )


def _claim(
    session: Session, department_id: int, key: str, request_hash: str, now: datetime
) -> Claim | Replay:
    existing = _find(session, department_id, key)
    if existing is None:
        row = IdempotencyKey(
            department_id=department_id,
            key=key,
            request_hash=request_hash,
            state="in_progress",
            created_at=now,
            expires_at=now + TTL,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return Claim(row.id, now)
        except IntegrityError:
            existing = _find(session, department_id, key)  # a concurrent request won
            if existing is None:
                raise RequestInProgress(
                    "a request with this Idempotency-Key is being processed; retry shortly",
                    field=HEADER,
                ) from None
    return _resolve(session, existing, request_hash, now)


def _find(session: Session, department_id: int, key: str) -> IdempotencyKey | None:
    query = select(IdempotencyKey).where(
        IdempotencyKey.department_id == department_id, IdempotencyKey.key == key
    )
    return session.scalar(query.with_for_update().execution_options(populate_existing=True))


def _resolve(
    session: Session, row: IdempotencyKey, request_hash: str, now: datetime
) -> Claim | Replay:
    if _aware(row.expires_at) <= now or (
        row.state == "in_progress" and _aware(row.created_at) <= now - LEASE
    ):
        return _take_over(session, row, request_hash, now)
    if row.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", field=HEADER
        )
    if row.state == "in_progress":
        raise RequestInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly",
            field=HEADER,
        )
    return Replay(int(row.response_status or 200), row.response_body)


def _take_over(session: Session, row: IdempotencyKey, request_hash: str, now: datetime) -> Claim:
    """Reuse an expired key, or a claim abandoned by a crashed process."""
    row.request_hash, row.state = request_hash, "in_progress"
    row.response_status, row.response_body = None, None
    row.created_at, row.expires_at = now, now + TTL
    session.flush()
    return Claim(row.id, now)


def complete(session: Session, claim_: Claim, status: int, body: Any) -> None:
    """Store the response in the work's own transaction; fail if the claim was lost."""
    result = session.execute(
        update(IdempotencyKey)
        .where(*_owned(claim_))
        .values(state="completed", response_status=status, response_body=body)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise RequestInProgress(
            "the Idempotency-Key claim expired while the request ran", field=HEADER
        )


def release(sessions: sessionmaker[Session], claim_: Claim) -> None:
    """Forget a claim whose work failed, so that the client can retry with the same key."""
    run_in_transaction(
        sessions,
        lambda s: s.execute(
            delete(IdempotencyKey)
            .where(*_owned(claim_))
            .execution_options(synchronize_session=False)
        ),
    )


def _owned(claim_: Claim) -> tuple[Any, ...]:
    return (
        IdempotencyKey.id == claim_.id,
        IdempotencyKey.state == "in_progress",
        IdempotencyKey.created_at == claim_.claimed_at,
    )


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete keys past their expiry; return how many."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at < (now or datetime.now(UTC)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
