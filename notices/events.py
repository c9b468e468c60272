"""Department webhooks: events about notices, recorded in an outbox and delivered signed.

1. :func:`record_event` runs inside the transaction that changes the notice, so an event exists
   exactly when the change committed. Recording the same (notice, type) twice is a no-op.
2. :func:`deliver_due_events` (the recurring job, every minute) claims due events in one short
   transaction, POSTs them with no database lock held, then records the outcomes in another.
   A failure is retried after :data:`BACKOFF_SECONDS`; after the last one the event is ``failed``.
   Every attempt is logged in ``webhook_deliveries``.

Delivery is at least once: a department de-duplicates on ``Feishui-Delivery`` (the event id).
Why the schedule lives in the database: docs/decisions/0004-department-events-outbox.md.

Each request carries ``Feishui-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
HMAC-SHA256 keyed with the department's secret over ``f"{t}.".encode() + raw_body``. A receiver
checks it with :func:`verify_signature` (:mod:`notices.webhook_signing`, or its own ten lines, see
docs/api.md): recompute the MAC over the raw body, compare in constant time, and refuse a ``t``
more than five minutes away.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy import bindparam, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from clearing.config import Settings, get_settings
from clearing.db import run_in_transaction
from clearing.errors import NotFound, ValidationError
from clearing.money import CNY, format_fen
from clearing.pii import KeyRing, PiiError
from clearing.runtime import get_runtime
from notices.event_models import EVENT_TYPES, DepartmentEvent, DepartmentWebhook, WebhookDelivery
from notices.models import Department
from notices.webhook_signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
)
from notices.webhook_signing import verify_signature as verify_signature  # for receivers

log = logging.getLogger(__name__)

USER_AGENT = "feishui-webhooks/1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format tag that secret scanners recognise

BACKOFF_SECONDS = (60, 300, 1800, 7200, 21600, 86400)
"""Wait after the 1st, 2nd, ... failed attempt; the attempt after the last wait is the final one."""
TIMEOUT_SECONDS = 5.0
LEASE_SECONDS = 60
"""How long a claim keeps other workers off an event; then it falls due again."""
CLAIM_CHUNK = 10
"""Events claimed per transaction, so that a chunk's deliveries fit in the lease."""
EVENT_STATUS = {"notice.paid": "paid", "notice.refunded": "refunded", "notice.expired": "expired"}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


# ------------------------------------------------------------------------------ recording


class EventNotice(Protocol):
    """What an event needs of its notice (an ORM ``Notice`` or a capture's view of one)."""

    @property
    def id(self) -> int: ...
    @property
    def department_id(self) -> int: ...
    @property
    def payment_code(self) -> str: ...
    @property
    def reference(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def principal(self) -> int: ...


def record_event(
    session: Session,
    notice: EventNotice,
    type: str,
    payload_extra: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    subscribed: bool | None = None,
) -> int | None:
    """Record that ``type`` happened to ``notice``; return the new event's id, or None if this
    notice already has an event of this type (recording is idempotent).

    Call it inside the transaction that changes the notice, e.g.
    ``record_event(session, notice, "notice.paid", {"amount_paid": "260.00", "paid_at": iso})``.
    ``payload_extra`` is merged into the event's data; amounts are yuan strings, never floats.
    ``subscribed`` is whether the department has an enabled webhook, when the caller has read
    it in this transaction already (the capture reads it with the notice); else it is looked up.
    """
    if notice.id is None:
        session.flush()
    if subscribed is None:
        subscribed = has_webhook(session, notice.department_id)
    values = event_row(notice, type, payload_extra, now=now, subscribed=subscribed)
    dialect = session.get_bind().dialect.name
    return session.execute(_statements(dialect)["insert_event"], values).scalar_one_or_none()  # type: ignore[no-any-return]


def event_row(
    notice: EventNotice,
    type: str,
    payload_extra: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    subscribed: bool,
) -> dict[str, Any]:
    """The ``department_events`` row :func:`record_event` inserts (for a caller that inserts it
    with other writes in one statement; the row is then skipped ``ON CONFLICT (notice_id,
    type)``, as :func:`record_event` does)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {EVENT_TYPES}")
    at = _utc(now)
    return {
        "department_id": notice.department_id,
        "notice_id": notice.id,
        "type": type,
        "payload": event_data(notice, type, payload_extra),
        "created_at": at,
        "state": "pending" if subscribed else "no_webhook",
        "attempts": 0,
        "next_attempt_at": at if subscribed else None,
    }


def has_webhook(session: Session, department_id: int) -> bool:
    """Whether ``department_id`` has an enabled webhook (its new events are then ``pending``)."""
    dialect = session.get_bind().dialect.name
    found = session.execute(_statements(dialect)["webhook"], {"department_id": department_id})
    return found.first() is not None


@functools.lru_cache(maxsize=4)
def _statements(dialect: str) -> dict[str, Any]:
    """The recording statements, built once per dialect (Core, compiled once and cached)."""
    events, hooks = DepartmentEvent.__table__, DepartmentWebhook.__table__
    module = postgresql if dialect == "postgresql" else sqlite
    return {
        "insert_event": module.insert(events)
        .on_conflict_do_nothing(index_elements=["notice_id", "type"])
        .returning(events.c.id),
        "webhook": select(hooks.c.id).where(
            hooks.c.department_id == bindparam("department_id"), hooks.c.enabled == true()
        ),
    }


def event_data(
    notice: EventNotice, type: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``data`` of an event: what the department needs to match it to its own records."""
    data: dict[str, Any] = {
        "notice_id": notice.id,
        "payment_code": notice.payment_code,
        "reference": notice.reference,
        "kind": notice.kind,
        # The status the event means, whether or not the caller has set it on the notice yet.
        "status": EVENT_STATUS[type],
        "principal": format_fen(notice.principal),
        "currency": CNY,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, float):
            raise ValueError(f"{key}: amounts are yuan strings such as '260.00', never floats")
        data[key] = value
    json.dumps(data)  # refuse what cannot be delivered now, inside the caller's transaction
    return data


# ------------------------------------------------------------------------------ endpoints


def set_webhook(
    session: Session,
    department_name: str,
    url: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> str:
    """Point ``department_name``'s events at ``url`` and return a new signing secret.

    The secret is shown once: only its encryption is stored. Calling again rotates it, the new
    secret replacing the old at once, and re-enables a disabled webhook.
    """
    settings = settings or get_settings()
    url = check_url(url, production=settings.env == "production")
    department = _department(session, department_name)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    sealed = _keyring(settings).encrypt(secret, aad=_aad(department.id))
    at = _utc(now)
    hook = _webhook(session, department.id, enabled_only=False, lock=True)
    if hook is None:
        hook = DepartmentWebhook(department_id=department.id, created_at=at)
        session.add(hook)
    hook.url, hook.secret_enc, hook.enabled, hook.updated_at = url, sealed, True, at
    session.flush()
    return secret


def disable_webhook(session: Session, department_name: str) -> None:
    """Stop delivering to ``department_name``; events recorded meanwhile become ``no_webhook``."""
    hook = _webhook(
        session, _department(session, department_name).id, enabled_only=False, lock=True
    )
    if hook is None:
        raise NotFound(f"department {department_name!r} has no webhook", field="name")
    hook.enabled, hook.updated_at = False, _utc(None)
    session.flush()


def check_url(url: str, *, production: bool) -> str:
    """Return ``url`` if we may deliver to it: https, or http to this machine outside production.

    In production, https to a loopback, private or link-local address is refused as well (a
    department must not make the platform call into its own network). Host names are not
    resolved here.
    """
    url = url.strip()
    parts = urlsplit(url)
    host = parts.hostname or ""
    local_http = parts.scheme == "http" and host in _LOCAL_HOSTS and not production
    if len(url) > 500 or not host or parts.username or parts.password or parts.fragment:
        raise ValidationError(
            "webhook URL must be an absolute URL of at most 500 characters, "
            "without credentials or fragment",
            field="url",
        )
    if not (parts.scheme == "https" or local_http):
        raise ValidationError(
            "webhook URL must use https:// (http:// is allowed only to "
            "127.0.0.1 or localhost, outside production)",
            field="url",
        )
    if production and _internal(host):
        raise ValidationError("webhook URL must not point at an internal address", field="url")
    return url


def _internal(host: str) -> bool:
    if host in _LOCAL_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _department(session: Session, name: str) -> Department:
    department = session.scalar(select(Department).where(Department.name == name))
    if department is None:
        raise NotFound(f"no department {name!r}", field="name")
    return department


def _webhook(
    session: Session, department_id: int, *, enabled_only: bool = True, lock: bool = False
) -> DepartmentWebhook | None:
    stmt = select(DepartmentWebhook).where(DepartmentWebhook.department_id == department_id)
    if enabled_only:
        stmt = stmt.where(DepartmentWebhook.enabled.is_(True))
    return session.scalar(stmt.with_for_update() if lock else stmt)


def _keyring(settings: Settings) -> KeyRing:
    return KeyRing.from_setting(settings.secret("pii_keys"))


def _aad(department_id: int) -> bytes:
    return f"department_webhook:{department_id}:secret".encode("ascii")


# ------------------------------------------------------------------------------ delivery


@dataclass(frozen=True)
class _Claim:
    """An event this worker holds the lease on, with what is needed to send it."""

    event_id: int
    type: str
    attempts: int
    """Attempts made before this one; recording the outcome checks it has not moved."""
    url: str
    secret: str
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    started_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver_due_events(
    sessions: sessionmaker[Session],
    *,
    http: httpx.Client | None = None,
    now: datetime | None = None,
    batch: int = 200,
    settings: Settings | None = None,
) -> int:
    """One delivery pass over up to ``batch`` due events; returns the HTTP attempts made.

    Safe to run in several workers at once: an event is claimed by one worker only (``FOR UPDATE
    SKIP LOCKED`` on PostgreSQL, the write lock on SQLite) and no lock is held during HTTP calls.
    ``now`` fixes the clock (tests); by default each attempt uses the current time.
    """
    keyring = _keyring(settings or get_settings())
    clock = (lambda: _utc(now)) if now else (lambda: datetime.now(UTC))
    client = http or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        made = 0
        while made < batch:
            size = min(CLAIM_CHUNK, batch - made)
            seen, claims = run_in_transaction(
                sessions, functools.partial(_claim, keyring=keyring, at=clock(), limit=size)
            )
            outcomes = _deliver_all(client, claims, clock)
            run_in_transaction(sessions, functools.partial(_record, outcomes=outcomes))
            made += len(outcomes)
            if seen < size:
                break
        return made
    finally:
        if http is None:
            client.close()


def deliver_due_events_job() -> int:
    """The recurring job (queue ``webhooks``, every minute): one delivery pass."""
    runtime = get_runtime()
    made = deliver_due_events(runtime.sessions, settings=runtime.settings)
    log.info("webhook delivery pass: %d attempts", made)
    return made


def _claim(
    session: Session, *, keyring: KeyRing, at: datetime, limit: int
) -> tuple[int, list[_Claim]]:
    """Take the lease on up to ``limit`` due events; returns (events seen, claims to send)."""
    events = session.scalars(
        select(DepartmentEvent)
        .where(DepartmentEvent.state == "pending", DepartmentEvent.next_attempt_at <= at)
        .order_by(DepartmentEvent.next_attempt_at, DepartmentEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # SQLite renders nothing: BEGIN IMMEDIATE serialises
    ).all()
    hooks = {
        h.department_id: h
        for h in session.scalars(
            select(DepartmentWebhook).where(
                DepartmentWebhook.department_id.in_({e.department_id for e in events}),
                DepartmentWebhook.enabled.is_(True),
            )
        )
    }
    claims = []
    for event in events:
        event.next_attempt_at = at + timedelta(seconds=LEASE_SECONDS)
        hook = hooks.get(event.department_id)
        if hook is None:
            event.state, event.next_attempt_at = "no_webhook", None
        elif (claim := _claim_one(event, hook, keyring)) is not None:
            claims.append(claim)
    return len(events), claims


def _claim_one(event: DepartmentEvent, hook: DepartmentWebhook, keyring: KeyRing) -> _Claim | None:
    try:
        secret = keyring.decrypt(hook.secret_enc, aad=_aad(hook.department_id))
    except PiiError:
        # One unreadable secret (a key dropped from the ring) must not stall other departments.
        log.exception("webhook secret of department %s cannot be decrypted", hook.department_id)
        return None
    return _Claim(event.id, event.type, event.attempts, hook.url, secret, envelope_bytes(event))


def envelope_bytes(event: DepartmentEvent) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, UTF-8, keys sorted."""
    envelope = {
        "id": event.id,
        "type": event.type,
        "created_at": _utc(event.created_at).isoformat(),
        "data": event.payload,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8"
    )


def _deliver_all(
    client: httpx.Client, claims: list[_Claim], clock: Callable[[], datetime]
) -> list[_Outcome]:
    # Stop before the lease could run out: unsent claims fall due again when it ends.
    deadline = time.monotonic() + LEASE_SECONDS - 2 * TIMEOUT_SECONDS
    outcomes = []
    for claim in claims:
        if time.monotonic() > deadline:
            break
        outcomes.append(_post(client, claim, clock()))
    return outcomes


def _post(client: httpx.Client, claim: _Claim, at: datetime) -> _Outcome:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: claim.type,
        DELIVERY_HEADER: str(claim.event_id),
        SIGNATURE_HEADER: sign(claim.secret, claim.body, int(at.timestamp())),
    }
    started = time.monotonic()
    try:
        # Streamed and closed unread: the receiver's body is neither needed nor trusted.
        with client.stream(
            "POST",
            claim.url,
            content=claim.body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as response:
            status: int | None = response.status_code
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:500]
    return _Outcome(claim, at, status, error, round((time.monotonic() - started) * 1000))


def _record(session: Session, *, outcomes: list[_Outcome]) -> None:
    """Log each attempt and move its event on, in event-id order (a total lock order)."""
    for outcome in sorted(outcomes, key=lambda o: o.claim.event_id):
        claim = outcome.claim
        session.add(
            WebhookDelivery(
                event_id=claim.event_id,
                attempt_no=claim.attempts + 1,
                url=claim.url,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                started_at=outcome.started_at,
            )
        )
        session.execute(_next_state(outcome).execution_options(synchronize_session=False))


def _next_state(outcome: _Outcome):  # type: ignore[no-untyped-def]
    event, claim = DepartmentEvent, outcome.claim
    pending = update(event).where(event.id == claim.event_id, event.state == "pending")
    if outcome.ok:  # a success always counts, even if another worker's lease overlapped ours
        return pending.values(
            state="delivered",
            delivered_at=outcome.started_at,
            next_attempt_at=None,
            attempts=event.attempts + 1,
        )
    attempts = claim.attempts + 1
    unchanged = pending.where(event.attempts == claim.attempts)
    if attempts > len(BACKOFF_SECONDS):
        return unchanged.values(state="failed", attempts=attempts, next_attempt_at=None)
    wait = timedelta(seconds=BACKOFF_SECONDS[attempts - 1])
    return unchanged.values(attempts=attempts, next_attempt_at=outcome.started_at + wait)


# ------------------------------------------------------------------------------ the log


@dataclass(frozen=True)
class LogLine:
    """One delivery attempt, for ``feishui webhooks log``."""

    started_at: datetime
    department: str
    event_id: int
    type: str
    attempt_no: int
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int
    event_state: str


def delivery_log(
    session: Session, department_name: str | None = None, limit: int = 50
) -> list[LogLine]:
    """The latest delivery attempts, newest first, optionally of one department."""
    stmt = (
        select(WebhookDelivery, DepartmentEvent, Department.name)
        .join(DepartmentEvent, DepartmentEvent.id == WebhookDelivery.event_id)
        .join(Department, Department.id == DepartmentEvent.department_id)
        .order_by(WebhookDelivery.started_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    if department_name is not None:
        stmt = stmt.where(Department.id == _department(session, department_name).id)
    return [
        LogLine(
            _utc(d.started_at),
            name,
            e.id,
            e.type,
            d.attempt_no,
            d.url,
            d.status_code,
            d.error,
            d.duration_ms,
            e.state,
        )
        for d, e, name in session.execute(stmt)
    ]


def _utc(moment: datetime | None) -> datetime:
    """``moment`` (default: now) in UTC; a naive value (as SQLite returns them) is UTC."""
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
