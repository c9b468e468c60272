"""Capture: turn a verified gateway statement (a notify or a query answer) into money, once.

Exactly once is the database's guarantee: the journal entry's idempotency key,
``capture:<order_id>``, is unique, and at most one attempt settles a notice (a unique
``settles_notice_id``). A success for a notice that is already settled is a *duplicate
payment*: it is captured to ``refunds_payable`` and a refund of it is opened automatically.

:func:`capture` is the entry point (notifies, the query job). On PostgreSQL it first tries the
**optimistic capture**: the attempt and its notice read without locks and outside any
transaction, the entry, receipt and event built and signed, then one statement that is its own
transaction (:mod:`clearing.payments.settle_pg`): it locks both rows, attempt then notice, and
writes everything only if neither row changed since it was read. No ``BEGIN``, no ``COMMIT``:
two statements in all (decision 0010). Whenever that statement writes nothing, or the case is
not a plain settling capture, :func:`apply_result` decides in an ordinary transaction: lock the
attempt, then the notice (always in that order, so two attempts of one notice cannot deadlock),
look, post, settle, log. On SQLite only the ordinary transaction runs.

No ORM work on either path: Core statements and, on PostgreSQL, statements on the driver
(docs/decisions/0008-driver-statements-on-hot-paths.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from clearing import metrics
from clearing.db import discard_if_broken, pg_autocommit, run_in_transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.payments import repository as repo
from clearing.payments import settle_pg
from clearing.payments.ids import new_refund_id
from clearing.payments.repository import AttemptView, NoticeView
from clearing.payments.states import MONEY, OPEN, TRANSITIONS, AttemptState, ensure_transition
from clearing.split import allocate, split_amount
from gateways.protocol import GatewayStatus, PaymentResult
from notices.events import event_row, record_event
from notices.fees import business_date
from notices.receipts import ESeal, default_eseal, insert_receipt, signed_receipt

SETTLEABLE = ("unpaid", "expired")
UNIQUE_VIOLATION = "23505"
NON_MONEY = {
    GatewayStatus.FAILED: AttemptState.FAILED,
    GatewayStatus.CLOSED: AttemptState.CANCELLED,
    GatewayStatus.PENDING: AttemptState.PENDING,
}


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    outcome: str
    """captured, duplicate, already_captured, amount_mismatch, unknown_order, state_changed,
    unchanged."""
    order_id: str
    attempt_id: int | None = None
    notice_id: int | None = None
    journal_entry_id: int | None = None
    refund_id: int | None = None
    """The automatic refund opened for a duplicate payment (to process after commit)."""

    @property
    def acknowledged(self) -> bool:
        """Whether to tell the gateway 'received' (it then stops retrying)."""
        return self.outcome != "unknown_order"


def capture(
    sessions: sessionmaker[Session],
    result: PaymentResult,
    *,
    source: str,
    now: datetime | None = None,
    eseal: ESeal | None = None,
) -> CaptureOutcome:
    """Apply a verified statement about an order, in a transaction of its own: the optimistic
    capture on PostgreSQL when the statement settles a notice, else (or when it writes nothing)
    :func:`apply_result` in :func:`~clearing.db.run_in_transaction`. Idempotent."""
    now = now or datetime.now(UTC)
    engine: Engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        reason = "not_postgresql"
    elif result.status is not GatewayStatus.SUCCEEDED:
        reason = "not_a_payment"
    else:
        captured = _capture_optimistically(engine, result, source, now, eseal or default_eseal())
        if isinstance(captured, CaptureOutcome):
            metrics.capture_paths.labels(path="optimistic", reason="").inc()
            return captured
        reason = captured
    metrics.capture_paths.labels(path="ordinary", reason=reason).inc()
    return run_in_transaction(
        sessions, lambda s: apply_result(s, result, source=source, now=now, eseal=eseal)
    )


def _capture_optimistically(
    engine: Engine, result: PaymentResult, source: str, now: datetime, eseal: ESeal
) -> CaptureOutcome | str:
    """PostgreSQL: what :func:`apply_result` does for a success that settles its notice, in two
    statements and no transaction around them (:mod:`clearing.payments.settle_pg`). When
    nothing was written and the ordinary path must decide, the reason (a label of
    ``feishui_capture_paths_total``): ``not_plain`` (an unknown order, money already taken, an
    amount that differs, a notice not payable), ``account_not_opened``, ``declined`` (a row
    changed since it was read, or the entry's key exists), ``unique_violation`` (a receipt
    number in use, say), ``operational_error`` (no connection, a lost one, a cancelled
    statement, a deadlock or serialization failure)."""
    try:
        with pg_autocommit(engine) as conn:
            try:
                return _read_then_write(conn, result, source, now, eseal)
            except OperationalError:
                discard_if_broken(conn)
                raise
    except OperationalError:
        # No connection to be had, or it was lost (the companion pool does not ping), the
        # statement was cancelled, or a deadlock or serialization failure rolled it back. A
        # read changed nothing, and a write either committed whole or not at all: the ordinary
        # path locks and looks, and finds the capture done or does it.
        return "operational_error"
    except IntegrityError as exc:  # rolled back whole: the statement was the transaction
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
            return "unique_violation"  # a receipt number in use, say: the ordinary path draws
        raise


def _read_then_write(
    conn: Connection, result: PaymentResult, source: str, now: datetime, eseal: ESeal
) -> CaptureOutcome | str:
    """The optimistic capture's read and its write on ``conn``; when nothing was written, the
    reason (:func:`_capture_optimistically`)."""
    read = repo.read_for_capture(conn, result.order_id)
    if read is None:
        return "not_plain"
    attempt, notice, versions = read
    if (
        attempt.gateway != result.gateway
        or AttemptState.SUCCEEDED not in TRANSITIONS[AttemptState(attempt.state)]
        or result.amount_fen != attempt.amount
        or notice.status not in SETTLEABLE
    ):
        return "not_plain"
    prepared = LedgerService.prepare_committed(conn, _capture_entry(attempt, notice, result, now))
    if prepared is None:
        return "account_not_opened"
    paid = _paid(attempt, result, now, AttemptState.SUCCEEDED)
    receipt, receipt_json = signed_receipt(notice, paid, eseal, now)
    outcome = _outcome("captured", paid)
    event = event_row(
        notice,
        "notice.paid",
        _paid_event_data(paid, receipt["number"]),
        now=now,
        subscribed=notice.subscribed,
    )
    settled = settle_pg.settle(
        conn,
        prepared,
        attempt_id=attempt.id,
        notice_id=notice.id,
        versions=versions,
        attempt_values={
            "state": paid.state,
            "paid_at": paid.paid_at,
            "gateway_txn_id": paid.gateway_txn_id,
        },
        receipt=receipt,
        receipt_json=receipt_json,
        event=event,
        notification=_notification(result, source, outcome),
        now=now,
    )
    if settled is None:
        return "declined"
    return replace(outcome, journal_entry_id=settled.entry_id)


def apply_result(
    session: Session,
    result: PaymentResult,
    *,
    source: str,
    now: datetime | None = None,
    eseal: ESeal | None = None,
) -> CaptureOutcome:
    """Apply a verified statement about an order. Idempotent: repeating it changes nothing.
    ``eseal`` signs the receipt of a settling capture (default: the process settings' key)."""
    now = now or datetime.now(UTC)
    notice: NoticeView | None = None
    if result.status is GatewayStatus.SUCCEEDED:  # money: the notice is needed (most often)
        locked = repo.lock_for_capture(session, result.order_id)
        attempt, notice = locked if locked is not None else (None, None)
    else:
        attempt = repo.lock_attempt(session, result.order_id)
    if attempt is None or attempt.gateway != result.gateway:
        return _log(session, result, source, CaptureOutcome("unknown_order", result.order_id))
    if result.status is not GatewayStatus.SUCCEEDED:
        return _log(session, result, source, _non_money(session, attempt, result, now))
    if attempt.state in MONEY:
        return _log(session, result, source, _outcome("already_captured", attempt))
    if result.amount_fen != attempt.amount:
        return _log(
            session,
            result,
            source,
            _outcome("amount_mismatch", attempt),
            f"gateway says {result.amount_fen} fen, attempt is {attempt.amount} fen",
        )
    notice = notice or repo.lock_notice(session, attempt.notice_id)
    if notice.status not in SETTLEABLE:
        return _log(session, result, source, _duplicate(session, attempt, notice, result, now))
    return _log(session, result, source, _settle(session, attempt, notice, result, now, eseal))


def _non_money(
    session: Session, attempt: AttemptView, result: PaymentResult, now: datetime
) -> CaptureOutcome:
    target = NON_MONEY.get(result.status)
    if target is None or attempt.state not in OPEN or attempt.state == target:
        return _outcome("unchanged", attempt)
    ensure_transition(attempt.state, target)
    repo.update_attempt(session, attempt.id, state=target.value, updated_at=now)
    return _outcome("state_changed", attempt)


def _settle(
    session: Session,
    attempt: AttemptView,
    notice: NoticeView,
    result: PaymentResult,
    now: datetime,
    eseal: ESeal | None,
) -> CaptureOutcome:
    ensure_transition(attempt.state, AttemptState.SUCCEEDED)
    posted = LedgerService(session).post(_capture_entry(attempt, notice, result, now))
    # The UPDATEs run at once: the UNIQUE settles_notice_id is checked before anything follows.
    paid = _paid(attempt, result, now, AttemptState.SUCCEEDED)
    repo.settle(
        session, attempt.id, notice.id, _paid_values(paid, now, posted.id, settles=notice.id), now
    )
    # No receipt can exist yet: we hold the notice's lock and saw it never paid (unpaid or
    # expired; the UNIQUE receipts.notice_id backs this), so it is inserted without looking.
    receipt = insert_receipt(session, notice, paid, eseal, now)
    record_event(
        session,
        notice,
        "notice.paid",
        _paid_event_data(paid, receipt.number),
        now=now,
        subscribed=notice.subscribed,
    )
    return _outcome("captured", paid, posted.id)


def _paid_event_data(attempt: AttemptView, receipt_number: str) -> dict[str, str]:
    assert attempt.paid_at is not None  # set by _paid
    return {
        "amount_paid": format_fen(attempt.amount),
        "late_fee": format_fen(attempt.late_fee),
        "paid_at": _aware(attempt.paid_at).isoformat(),
        "gateway": attempt.gateway,
        "receipt_number": receipt_number,
    }


def _duplicate(
    session: Session,
    attempt: AttemptView,
    notice: NoticeView,
    result: PaymentResult,
    now: datetime,
) -> CaptureOutcome:
    ensure_transition(attempt.state, AttemptState.DUPLICATE)
    entry = Entry(
        idempotency_key=f"capture:{attempt.order_id}",
        business_date=business_date(result.paid_at or now),
        description=f"Duplicate payment {attempt.order_id} for notice {notice.payment_code}",
        postings=(
            Posting.debit(f"gateway_clearing:{attempt.gateway}", attempt.amount),
            Posting.credit("refunds_payable", attempt.amount),
        ),
        metadata=_metadata(notice, result),
        ref_type="payment_attempt",
        ref_id=attempt.order_id,
    )
    posted = LedgerService(session).post(entry)
    _mark_paid(session, attempt, result, now, posted.id, AttemptState.DUPLICATE)
    refund_id = repo.insert_refund(
        session,
        refund_id=new_refund_id(now),
        notice_id=notice.id,
        attempt_id=attempt.id,
        kind="duplicate",
        state="submitted",
        amount=attempt.amount,
        reason="duplicate payment: the notice was already paid",
        created_at=now,
        updated_at=now,
    )
    return _outcome("duplicate", attempt, posted.id, refund_id)


def _mark_paid(
    session: Session,
    attempt: AttemptView,
    result: PaymentResult,
    now: datetime,
    entry_id: int,
    state: AttemptState,
) -> AttemptView:
    """Record the money on an attempt that settles nothing (a duplicate payment)."""
    paid = _paid(attempt, result, now, state)
    repo.update_attempt(session, attempt.id, **_paid_values(paid, now, entry_id, settles=None))
    return paid


def _paid(
    attempt: AttemptView, result: PaymentResult, now: datetime, state: AttemptState
) -> AttemptView:
    return replace(
        attempt,
        state=state.value,
        paid_at=result.paid_at or now,
        gateway_txn_id=result.gateway_txn_id,
    )


def _paid_values(
    paid: AttemptView, now: datetime, entry_id: int, *, settles: int | None
) -> dict[str, Any]:
    """The attempt's columns to UPDATE once the money is posted."""
    values: dict[str, Any] = {
        "state": paid.state,
        "updated_at": now,
        "paid_at": paid.paid_at,
        "gateway_txn_id": paid.gateway_txn_id,
        "journal_entry_id": entry_id,
    }
    if settles is not None:
        values["settles_notice_id"] = settles
    return values


def _capture_entry(
    attempt: AttemptView, notice: NoticeView, result: PaymentResult, now: datetime
) -> Entry:
    credits = treasury_credits(notice, attempt.principal, attempt.late_fee)
    return Entry(
        idempotency_key=f"capture:{attempt.order_id}",
        business_date=business_date(result.paid_at or now),
        description=f"Payment {attempt.order_id} for notice {notice.payment_code}",
        postings=(
            Posting.debit(f"gateway_clearing:{attempt.gateway}", attempt.amount),
            *(Posting.credit(acct, fen) for acct, fen in credits.items() if fen),
        ),
        metadata=_metadata(notice, result),
        ref_type="payment_attempt",
        ref_id=attempt.order_id,
    )


class SplitItem(Protocol):
    """A notice line as the split needs it (an ORM ``NoticeItem`` or a repository view)."""

    @property
    def line_no(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def shares(self) -> dict[str, int]: ...


class SplitNotice(Protocol):
    @property
    def items(self) -> Iterable[SplitItem]: ...


def treasury_credits(notice: SplitNotice, principal: int, late_fee: int) -> dict[str, int]:
    """Fen owed to each treasury account: each item by its shares; the late fee spread over the
    items in proportion to their amounts, then by the same shares. Conserves every fen."""
    items = {str(item.line_no): item for item in notice.items}
    fee_parts = allocate(late_fee, {k: i.amount for k, i in items.items()}) if late_fee else {}
    out: dict[str, int] = defaultdict(int)
    for key, item in items.items():
        for treasury, fen in split_amount(item.amount + fee_parts.get(key, 0), item.shares).items():
            out[f"treasury_payable:{treasury}"] += fen
    assert sum(out.values()) == principal + late_fee, "items must add up to the principal"
    return dict(sorted(out.items()))


def _metadata(notice: NoticeView, result: PaymentResult) -> dict[str, str]:
    return {
        "notice_id": str(notice.id),
        "payment_code": notice.payment_code,
        "gateway_txn_id": result.gateway_txn_id or "",
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _outcome(
    name: str, attempt: AttemptView, entry_id: int | None = None, refund_id: int | None = None
) -> CaptureOutcome:
    return CaptureOutcome(
        name, attempt.order_id, attempt.id, attempt.notice_id, entry_id, refund_id
    )


def _log(
    session: Session, result: PaymentResult, source: str, outcome: CaptureOutcome, detail: str = ""
) -> CaptureOutcome:
    repo.insert_notification(session, **_notification(result, source, outcome, detail))
    return outcome


def _notification(
    result: PaymentResult, source: str, outcome: CaptureOutcome, detail: str = ""
) -> dict[str, Any]:
    """The ``gateway_notifications`` row logging what a gateway told us and what came of it."""
    return {
        "gateway": result.gateway,
        "event_id": result.event_id,
        "order_id": result.order_id,
        "outcome": outcome.outcome,
        "detail": f"{source}: {result.status.value} {detail}".strip(),
        "received_at": datetime.now(UTC),
    }
