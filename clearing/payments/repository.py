"""Reads and writes of the capture path, as prebuilt SQLAlchemy Core statements.

Each statement is built once, at import, on the tables (not through the ORM) and executed with
bound parameters, so SQLAlchemy compiles it once per engine and caches it; no unit of work runs
on the hot path. Rows come back as small frozen views, not as ORM objects: a capture reads what
it needs and writes with explicit UPDATEs and INSERTs (the pattern of
:mod:`clearing.ledger.repository`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    bindparam,
    exists,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from clearing.db import pg_execute, pg_execute_on, pg_sql
from clearing.payments.models import GatewayNotification, PaymentAttempt, Refund
from notices.event_models import DepartmentWebhook
from notices.models import Department, Notice, NoticeItem

_attempts = PaymentAttempt.__table__
_notices = Notice.__table__
_items = NoticeItem.__table__
_departments = Department.__table__
_webhooks = DepartmentWebhook.__table__

_ATTEMPT_COLUMNS = (
    "id",
    "order_id",
    "notice_id",
    "gateway",
    "channel",
    "state",
    "amount",
    "principal",
    "late_fee",
    "gateway_txn_id",
    "paid_at",
)
_NOTICE_COLUMNS = (
    "id",
    "department_id",
    "payment_code",
    "kind",
    "status",
    "principal",
    "reference",
    "payer_name_masked",
)
_ITEM_COLUMNS = (
    "line_no",
    "item_code",
    "name_zh",
    "name_en",
    "quantity",
    "unit_amount",
    "amount",
    "shares",
)


@dataclass(frozen=True, slots=True)
class AttemptView:
    """The payment attempt as locked by a capture (the columns a capture reads)."""

    id: int
    order_id: str
    notice_id: int
    gateway: str
    channel: str
    state: str
    amount: int
    """Integer fen: principal + late fee, fixed when the attempt started."""
    principal: int
    """Integer fen."""
    late_fee: int
    """Integer fen."""
    gateway_txn_id: str | None
    paid_at: datetime | None


@dataclass(frozen=True, slots=True)
class ItemView:
    line_no: int
    item_code: str
    name_zh: str
    name_en: str
    quantity: int
    unit_amount: int
    """Integer fen."""
    amount: int
    """Integer fen."""
    shares: dict[str, int]


@dataclass(frozen=True, slots=True)
class DepartmentView:
    name: str
    region_code: str


@dataclass(frozen=True, slots=True)
class NoticeView:
    """The notice as locked by a capture, with its items, its department and whether the
    department has an enabled webhook, all read in one statement."""

    id: int
    department_id: int
    payment_code: str
    kind: str
    status: str
    principal: int
    """Integer fen."""
    reference: str
    payer_name_masked: str
    department: DepartmentView
    items: tuple[ItemView, ...]
    subscribed: bool
    """Whether the department has an enabled webhook (its events are then ``pending``)."""


def _notice_columns() -> list[Any]:
    """The columns a capture reads about a notice: the notice, its department, whether the
    department has an enabled webhook, and one item per row."""
    subscribed = exists().where(
        _webhooks.c.department_id == _notices.c.department_id, _webhooks.c.enabled == true()
    )
    return [
        *(_notices.c[c] for c in _NOTICE_COLUMNS),
        _departments.c.name.label("department_name"),
        _departments.c.region_code,
        subscribed.label("subscribed"),
        *(_items.c[c].label(f"item_{c}") for c in _ITEM_COLUMNS),
    ]


def _lock_notice_statement() -> Select[Any]:
    return (
        select(*_notice_columns())
        .join(_departments, _departments.c.id == _notices.c.department_id)
        .join(_items, _items.c.notice_id == _notices.c.id)
        .where(_notices.c.id == bindparam("notice_id"))
        .order_by(_items.c.line_no)
        .with_for_update(of=_notices)  # SQLite renders nothing: BEGIN IMMEDIATE serialises
    )


def _lock_for_capture_statement() -> Select[Any]:
    """PostgreSQL: the attempt, then its notice (as :data:`_LOCK_NOTICE` reads it), both
    locked, in one round trip. The attempt is locked in a materialised CTE; a notice row reaches
    the top-level ``FOR UPDATE OF notices`` only joined to an attempt row the CTE has already
    produced, so the attempt is always locked first, as with two statements (two attempts of
    one notice cannot deadlock)."""
    attempt = (
        select(*(_attempts.c[c] for c in _ATTEMPT_COLUMNS))
        .where(_attempts.c.order_id == bindparam("order_id"))
        .with_for_update()
        .cte("locked_attempt")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(*attempt.c, *_notice_columns())
        .select_from(attempt)
        .join(_notices, _notices.c.id == attempt.c.notice_id)
        .join(_departments, _departments.c.id == _notices.c.department_id)
        .join(_items, _items.c.notice_id == _notices.c.id)
        .order_by(_items.c.line_no)
        .with_for_update(of=_notices)
    )


def _read_for_capture_statement() -> Select[Any]:
    """PostgreSQL: what :func:`_lock_for_capture_statement` reads, without locking, and first
    the version of the attempt's row and of the notice's (their ``xmin``: the transaction that
    wrote that version of the row; any change to the row makes a new version)."""
    return (
        select(
            literal_column("payment_attempts.xmin::text").label("attempt_version"),
            literal_column("notices.xmin::text").label("notice_version"),
            *(_attempts.c[c] for c in _ATTEMPT_COLUMNS),
            *_notice_columns(),
        )
        .select_from(_attempts)
        .join(_notices, _notices.c.id == _attempts.c.notice_id)
        .join(_departments, _departments.c.id == _notices.c.department_id)
        .join(_items, _items.c.notice_id == _notices.c.id)
        .where(_attempts.c.order_id == bindparam("order_id"))
        .order_by(_items.c.line_no)
    )


# Built once, at import; each engine compiles them once per dialect and caches the result.
_LOCK_ATTEMPT = (
    select(*(_attempts.c[c] for c in _ATTEMPT_COLUMNS))
    .where(_attempts.c.order_id == bindparam("order_id"))
    .with_for_update()
)
_LOCK_NOTICE = _lock_notice_statement()
_LOCK_FOR_CAPTURE = _lock_for_capture_statement()
_READ_FOR_CAPTURE = _read_for_capture_statement()
# No VALUES: the SET clause is the columns of the parameters given at execution.
_UPDATE_ATTEMPT = update(_attempts).where(_attempts.c.id == bindparam("attempt_id"))
_UPDATE_NOTICE = update(_notices).where(_notices.c.id == bindparam("notice_id"))
_SETTLE_COLUMNS = (
    "state",
    "updated_at",
    "paid_at",
    "gateway_txn_id",
    "journal_entry_id",
    "settles_notice_id",
)


def _settle_statement() -> Update:
    """PostgreSQL: the settling attempt's UPDATE and the notice's in one statement (a data-
    modifying CTE; both run, and both are checked, before the statement returns). Parameters
    are prefixed: a name that is a column of either table would be taken as a SET value."""
    attempt = (
        update(_attempts)
        .where(_attempts.c.id == bindparam("a_key"))
        .values({c: bindparam(f"a_{c}", type_=_attempts.c[c].type) for c in _SETTLE_COLUMNS})
        .cte("settled_attempt")
    )
    return (
        update(_notices)
        .where(_notices.c.id == bindparam("n_key"))
        .values(status=bindparam("n_status"), updated_at=bindparam("n_updated_at"))
        .add_cte(attempt)
    )


_SETTLE = _settle_statement()
_INSERT_REFUND = insert(Refund.__table__).returning(Refund.__table__.c.id)
_INSERT_NOTIFICATION = insert(GatewayNotification.__table__)


def _conn(session: Session) -> Connection:
    """The session's connection in its transaction: Core statements run on it directly,
    without the ORM's execute path (no autoflush, no ORM compile state; none is needed)."""
    return session.connection()


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _rows(session: Session, statement: Any, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
    """Run a prebuilt SELECT: on PostgreSQL on the driver (:func:`clearing.db.pg_execute`, the
    same SQL at a quarter of the client CPU), else through SQLAlchemy."""
    if _postgres(session):
        return pg_execute(session, pg_sql(statement), params)
    return _conn(session).execute(statement, params).all()


def lock_attempt(session: Session, order_id: str) -> AttemptView | None:
    """``SELECT ... FOR UPDATE`` of the attempt with ``order_id`` (None if there is none)."""
    rows = _rows(session, _LOCK_ATTEMPT, {"order_id": order_id})
    return AttemptView(*rows[0]) if rows else None


def lock_notice(session: Session, notice_id: int) -> NoticeView:
    """``SELECT ... FOR UPDATE OF notices`` of the notice, joined with its department and its
    items (one row per item) and the webhook check: one round trip."""
    rows = _rows(session, _LOCK_NOTICE, {"notice_id": notice_id})
    if not rows:  # a notice always has items (its principal is their sum)
        raise LookupError(f"notice {notice_id} does not exist or has no items")
    return _notice_view(rows, 0)


def lock_for_capture(session: Session, order_id: str) -> tuple[AttemptView, NoticeView] | None:
    """The attempt with ``order_id`` and its notice, both locked, attempt first (None if there
    is no such attempt). PostgreSQL: one round trip; SQLite: :func:`lock_attempt` then
    :func:`lock_notice`."""
    if not _postgres(session):
        attempt = lock_attempt(session, order_id)
        return None if attempt is None else (attempt, lock_notice(session, attempt.notice_id))
    rows = pg_execute(session, pg_sql(_LOCK_FOR_CAPTURE), {"order_id": order_id})
    if not rows:  # an attempt always has a notice, and a notice items
        return None
    width = len(_ATTEMPT_COLUMNS)
    return AttemptView(*rows[0][:width]), _notice_view(rows, width)


@dataclass(frozen=True, slots=True)
class Versions:
    """The versions of an attempt's row and of its notice's, as read (PostgreSQL ``xmin``)."""

    attempt: str
    notice: str


def read_for_capture(
    conn: Connection, order_id: str
) -> tuple[AttemptView, NoticeView, Versions] | None:
    """PostgreSQL, outside any transaction: the attempt with ``order_id`` and its notice, as
    :func:`lock_for_capture` reads them but without locks, and the version of each row, for a
    write that must find both rows unchanged (:mod:`clearing.payments.settle_pg`). None if
    there is no such attempt."""
    rows = pg_execute_on(conn, pg_sql(_READ_FOR_CAPTURE), {"order_id": order_id})
    if not rows:
        return None
    width = 2 + len(_ATTEMPT_COLUMNS)
    first = rows[0]
    return (
        AttemptView(*first[2:width]),
        _notice_view(rows, width),
        Versions(first[0], first[1]),
    )


def _notice_view(rows: Sequence[Sequence[Any]], offset: int) -> NoticeView:
    """The notice of rows laid out as :func:`_notice_columns`, from column ``offset``."""
    first, width = rows[0], offset + len(_NOTICE_COLUMNS)  # notice, department (2), subscribed
    return NoticeView(
        *first[offset:width],
        department=DepartmentView(first[width], first[width + 1]),
        items=tuple(ItemView(*row[width + 3 :]) for row in rows),
        subscribed=bool(first[width + 2]),
    )


def update_attempt(session: Session, attempt_id: int, **values: Any) -> None:
    """``UPDATE payment_attempts SET <values> WHERE id = attempt_id``."""
    _conn(session).execute(_UPDATE_ATTEMPT, {"attempt_id": attempt_id, **values})


def mark_notice(session: Session, notice_id: int, status: str, now: datetime) -> None:
    """Set the notice's status (the caller holds its lock)."""
    _conn(session).execute(
        _UPDATE_NOTICE,
        {"notice_id": notice_id, "status": status, "updated_at": now},
    )


def settle(
    session: Session, attempt_id: int, notice_id: int, attempt_values: dict[str, Any], now: datetime
) -> None:
    """Record the settling attempt's money (``attempt_values``: the columns of
    ``_SETTLE_COLUMNS``) and mark its notice paid. PostgreSQL: one statement; SQLite: two."""
    conn = _conn(session)
    if conn.dialect.name != "postgresql":
        update_attempt(session, attempt_id, **attempt_values)
        mark_notice(session, notice_id, "paid", now)
        return
    params = {f"a_{c}": attempt_values[c] for c in _SETTLE_COLUMNS}
    conn.execute(
        _SETTLE,
        {"a_key": attempt_id, "n_key": notice_id, "n_status": "paid", "n_updated_at": now} | params,
    )


def insert_refund(session: Session, **values: Any) -> int:
    """Insert a refund row; returns its id."""
    return _conn(session).execute(_INSERT_REFUND, values).scalar_one()  # type: ignore[no-any-return]


def insert_notification(session: Session, **values: Any) -> None:
    """Log what a gateway told us (``gateway_notifications``)."""
    _conn(session).execute(_INSERT_NOTIFICATION, values)
