"""Capture: turn a verified gateway statement (a notify or a query answer) into money, once.

One database transaction: lock the attempt, then the notice (always in that order, so two
attempts of one notice cannot deadlock); post the journal entry (its idempotency key,
``capture:<order_id>``, is the database's own guarantee of exactly once); mark the notice paid
and issue the receipt. A success for a notice that is already settled is a *duplicate payment*:
it is captured to ``refunds_payable`` and a refund of it is opened automatically.

No ORM work on this path. On PostgreSQL a settling capture is two statements on the driver: the
attempt and its notice locked together (:func:`clearing.payments.repository.lock_for_capture`),
then every write (:mod:`clearing.payments.settle_pg`). On SQLite it is 9 prebuilt Core
statements. See docs/decisions/0008-driver-statements-on-hot-paths.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from clearing.ledger.core import Entry, Posting
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.payments import repository as repo
from clearing.payments import settle_pg
from clearing.payments.ids import new_refund_id
from clearing.payments.repository import AttemptView, NoticeView
from clearing.payments.states import MONEY, OPEN, AttemptState, ensure_transition
from clearing.split import allocate, split_amount
from gateways.protocol import GatewayStatus, PaymentResult
from notices.events import event_row, record_event
from notices.fees import business_date
from notices.receipts import ESeal, default_eseal, insert_receipt, signed_receipt

SETTLEABLE = ("unpaid", "expired")
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
    if session.get_bind().dialect.name == "postgresql":
        settled = _settle_in_one_statement(session, attempt, notice, result, source, now, eseal)
        if settled is not None:
            return settled
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


def _settle_in_one_statement(
    session: Session,
    attempt: AttemptView,
    notice: NoticeView,
    result: PaymentResult,
    source: str,
    now: datetime,
    eseal: ESeal | None,
) -> CaptureOutcome | None:
    """PostgreSQL: what :func:`_settle` and :func:`_log` write, in one statement
    (:mod:`clearing.payments.settle_pg`). None when the entry's key exists: nothing was written
    and :func:`_settle` runs (it replays or refuses the key)."""
    ensure_transition(attempt.state, AttemptState.SUCCEEDED)
    prepared = LedgerService(session).prepare(_capture_entry(attempt, notice, result, now))
    paid = _paid(attempt, result, now, AttemptState.SUCCEEDED)
    receipt, receipt_json = signed_receipt(notice, paid, eseal or default_eseal(), now)
    paid_data = _paid_event_data(paid, receipt["number"])
    outcome = _outcome("captured", paid)
    settled = settle_pg.settle(
        session,
        prepared,
        attempt_id=attempt.id,
        notice_id=notice.id,
        attempt_values={
            "state": paid.state,
            "paid_at": paid.paid_at,
            "gateway_txn_id": paid.gateway_txn_id,
        },
        receipt=receipt,
        receipt_json=receipt_json,
        event=event_row(notice, "notice.paid", paid_data, now=now, subscribed=notice.subscribed),
        notification=_notification(result, source, outcome),
        now=now,
    )
    if settled is None:
        return None
    if settled.receipt_id is None:  # the number was in use: the receipt and event the usual way
        issued = insert_receipt(session, notice, paid, eseal, now)
        data = _paid_event_data(paid, issued.number)
        record_event(session, notice, "notice.paid", data, now=now, subscribed=notice.subscribed)
    return replace(outcome, journal_entry_id=settled.entry_id)


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
