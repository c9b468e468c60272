"""The audit log service: :func:`record` an action, :func:`list_events` to read them back.

An event says who (:class:`Actor`), what (an action and a :class:`Target`, with ``details``),
when, from where (client address and user agent of the request) and which request (its id).
``details`` is scrubbed before it is stored: values under secret-like keys are replaced, and
every string is passed through the log redactor (ID numbers, API keys, PEM blocks...).

Like every service, :func:`record` only adds and flushes: the edge commits, so an audited
action and its audit event commit or roll back together.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.audit_models import AuditEvent
from clearing.errors import ValidationError
from clearing.logs import current_request_id, redact_value

ACTOR_TYPES = ("user", "department", "cli", "system")
_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|token|api_?key|authorization|"
    r"private|pem|cookie|id_number|idnumber|phone)"
)
MAX_PAGE = 500


@dataclass(frozen=True)
class Actor:
    """Who acted: ``Actor("user", "alice")``, ``Actor("department", "12")``."""

    type: str
    id: str

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise ValidationError(
                f"actor type must be one of {', '.join(ACTOR_TYPES)}", field="actor"
            )


SYSTEM = Actor("system", "feishui")


@dataclass(frozen=True)
class Target:
    """What was acted on: ``Target("api_key", "ab12cd34")``."""

    type: str
    id: str | None = None


class RequestLike(Protocol):
    """What :func:`record` reads of an HTTP request (a Starlette ``Request`` fits)."""

    @property
    def headers(self) -> Any: ...

    @property
    def client(self) -> Any: ...


def record(
    session: Session,
    actor: Actor | str,
    action: str,
    target: Target | tuple[str, Any],
    details: dict[str, Any] | None = None,
    request: RequestLike | None = None,
    *,
    now: datetime | None = None,
) -> AuditEvent:
    """Append one audit event (flushed, not committed). ``actor`` may be ``"type:id"``."""
    actor = _actor(actor)
    target = target if isinstance(target, Target) else Target(target[0], _str(target[1]))
    ip, agent = _origin(request)
    event = AuditEvent(
        occurred_at=now or datetime.now(UTC),
        actor_type=actor.type,
        actor_id=actor.id[:100],
        action=action[:64],
        target_type=target.type[:40],
        target_id=_str(target.id),
        details=scrub(details or {}),
        ip=ip,
        user_agent=agent,
        request_id=current_request_id() or _state_request_id(request),
    )
    session.add(event)
    session.flush()
    return event


def scrub(value: Any, key: str = "") -> Any:
    """``value`` without secrets: secret-like keys masked, every string redacted."""
    if key and _SECRET_KEY.search(key):
        return "[REDACTED]"
    if isinstance(value, dict):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return redact_value(value)
    return redact_value(str(value))


def _actor(actor: Actor | str) -> Actor:
    if isinstance(actor, Actor):
        return actor
    kind, sep, ident = actor.partition(":")
    if not sep or not ident:
        raise ValidationError("actor must look like 'user:alice'", field="actor")
    return Actor(kind, ident)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)[:64]


def _origin(request: RequestLike | None) -> tuple[str | None, str | None]:
    if request is None:
        return None, None
    client = getattr(request, "client", None)
    ip = getattr(client, "host", None) if client else None
    agent = request.headers.get("user-agent") if request.headers is not None else None
    return (ip[:45] if ip else None), (agent[:300] if agent else None)


def _state_request_id(request: RequestLike | None) -> str | None:
    state = getattr(request, "state", None)
    return getattr(state, "request_id", None) if state is not None else None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class AuditFilters:
    """Every field optional; set fields must all match. Times are inclusive-exclusive."""

    actor_type: str | None = None
    actor_id: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class AuditPage:
    """Events newest first; ``next_cursor`` fetches the older ones (None at the end)."""

    events: list[AuditEvent]
    next_cursor: str | None


def list_events(
    session: Session, filters: AuditFilters | None = None, cursor: str | None = None
) -> AuditPage:
    """A page of audit events, newest first, keyset-paginated by id (stable under inserts)."""
    filters = filters or AuditFilters()
    limit = max(1, min(filters.limit, MAX_PAGE))
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for column, value in _equalities(filters):
        query = query.where(column == value)
    if filters.since is not None:
        query = query.where(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.occurred_at < filters.until)
    if cursor is not None:
        query = query.where(AuditEvent.id < decode_cursor(cursor))
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, encode_cursor(rows[-1].id) if more else None)


def _equalities(f: AuditFilters) -> list[tuple[Any, Any]]:
    pairs = [
        (AuditEvent.actor_type, f.actor_type),
        (AuditEvent.actor_id, f.actor_id),
        (AuditEvent.action, f.action),
        (AuditEvent.target_type, f.target_type),
        (AuditEvent.target_id, f.target_id),
    ]
    return [(column, value) for column, value in pairs if value is not None]


def encode_cursor(event_id: int) -> str:
    """An opaque cursor for the events older than ``event_id``."""
    return base64.urlsafe_b64encode(f"a1:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The event id in a cursor from :func:`encode_cursor`; ValidationError otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, number = text.partition(":")
        if tag != "a1" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("cursor is not valid", field="cursor") from None
