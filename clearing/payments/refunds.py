"""Refunds: request (guarded, under the notice's lock), then process (gateway, then ledger).

The total refunded never exceeds what was paid, also under concurrent requests: every request
locks the notice row and recomputes what is still available before adding its refund. The
gateway call happens outside any transaction and is idempotent at the gateway by ``refund_id``.
The ledger entry is posted only when the gateway confirms:
- a requested refund: Dr ``treasury_payable:*`` (in proportion to the capture's split) /
  Cr ``gateway_clearing:<gateway>``;
- the refund of a duplicate payment: Dr ``refunds_payable`` / Cr ``gateway_clearing:<gateway>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clearing.db import run_in_transaction
from clearing.errors import Conflict, FeishuiError, NotFound, ValidationError
from clearing.ledger.core import Entry, Posting
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.payments.ids import new_refund_id
from clearing.payments.models import PaymentAttempt, Refund
from clearing.split import allocate
from gateways.protocol import (
    GatewayUnavailable,
    PaymentGateway,
    RefundRequest,
    RefundResult,
    RefundStatus,
)
from notices.events import record_event
from notices.fees import business_date
from notices.models import Notice

REFUNDABLE = ("paid",)


class StaleRefundAmount(FeishuiError):
    """The caller's ``refund_amount_available`` is not the current one."""

    type = "refund-amount-available-mismatch"
    status = 412


@dataclass(frozen=True)
class Available:
    paid: int
    refunded: int

    @property
    def available(self) -> int:
        return self.paid - self.refunded


def availability(session: Session, notice: Notice) -> Available:
    """What the settling attempt collected and what requested refunds already hold."""
    attempt = settling_attempt(session, notice.id)
    held = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.notice_id == notice.id, Refund.kind == "requested", Refund.state != "failed"
        )
    )
    return Available(attempt.amount if attempt else 0, int(held or 0))


def settling_attempt(session: Session, notice_id: int) -> PaymentAttempt | None:
    return session.scalars(
        select(PaymentAttempt).where(PaymentAttempt.settles_notice_id == notice_id)
    ).one_or_none()


def request_refund(
    session: Session,
    *,
    department_id: int,
    notice_id: int,
    amount: int,
    reason: str,
    expected_available: int | None,
    now: datetime | None = None,
) -> Refund:
    """Open a refund of ``amount`` fen for a paid notice of this department."""
    now = now or datetime.now(UTC)
    notice = session.scalars(
        select(Notice)
        .where(Notice.id == notice_id, Notice.department_id == department_id)
        .with_for_update(of=Notice)
    ).one_or_none()
    if notice is None:
        raise NotFound(f"notice {notice_id} not found")
    if notice.status not in REFUNDABLE:
        raise Conflict(f"a {notice.status} notice cannot be refunded")
    avail = availability(session, notice)
    if expected_available is not None and expected_available != avail.available:
        raise StaleRefundAmount(
            f"refund_amount_available is {format_fen(avail.available)}, "
            f"not {format_fen(expected_available)}",
            field="refund_amount_available",
        )
    if not 0 < amount <= avail.available:
        raise ValidationError(
            f"amount must be between 0.01 and {format_fen(avail.available)}", field="amount"
        )
    attempt = settling_attempt(session, notice.id)
    assert attempt is not None  # a paid notice has its settling attempt
    refund = Refund(
        refund_id=new_refund_id(now),
        notice_id=notice.id,
        attempt_id=attempt.id,
        kind="requested",
        state="submitted",
        amount=amount,
        reason=reason[:300],
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    session.flush()
    return refund


def process_refund(
    sessions: sessionmaker[Session], gateways: Callable[[str], PaymentGateway], refund_pk: int
) -> str:
    """Send a submitted refund to its gateway and record the answer. Idempotent: a refund that is
    no longer ``submitted`` is left alone; the gateway dedupes by ``refund_id``."""
    snapshot = run_in_transaction(sessions, lambda s: _snapshot(s, refund_pk))
    if snapshot is None:
        return "not_submitted"
    gateway_name, request = snapshot
    try:
        answer = gateways(gateway_name).refund(request)
    except GatewayUnavailable:
        return "retry_later"
    return run_in_transaction(sessions, lambda s: record_refund_answer(s, refund_pk, answer))


def _snapshot(session: Session, refund_pk: int) -> tuple[str, RefundRequest] | None:
    refund = session.get(Refund, refund_pk)
    if refund is None or refund.state != "submitted":
        return None
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    return attempt.gateway, RefundRequest(
        refund_id=refund.refund_id,
        order_id=attempt.order_id,
        amount_fen=refund.amount,
        order_amount_fen=attempt.amount,
        reason=refund.reason,
        gateway_txn_id=attempt.gateway_txn_id,
    )


def record_refund_answer(
    session: Session, refund_pk: int, answer: RefundResult, now: datetime | None = None
) -> str:
    """Apply the gateway's answer under the refund's lock; posts the ledger entry on success."""
    now = now or datetime.now(UTC)
    refund = session.scalars(select(Refund).where(Refund.id == refund_pk).with_for_update()).one()
    if refund.state != "submitted" or answer.status is RefundStatus.PENDING:
        return refund.state
    refund.updated_at, refund.gateway_refund_id = now, answer.gateway_refund_id
    if answer.status is RefundStatus.FAILED:
        refund.state, refund.failure = "failed", "the gateway refused the refund"
        return "failed"
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    notice = session.scalars(
        select(Notice).where(Notice.id == refund.notice_id).with_for_update(of=Notice)
    ).one()
    refund.journal_entry_id = (
        LedgerService(session).post(_refund_entry(session, refund, attempt, notice, now)).id
    )
    refund.state = "succeeded"
    session.flush()
    if refund.kind == "requested" and _fully_refunded(session, notice):
        notice.status, notice.updated_at = "refunded", now
        record_event(
            session,
            notice,
            "notice.refunded",
            {"amount_refunded": format_fen(attempt.amount)},
            now=now,
        )
    return "succeeded"


def _refund_entry(
    session: Session,
    refund: Refund,
    attempt,
    notice: Notice,  # type: ignore[no-untyped-def]
    now: datetime,
) -> Entry:
    clearing = Posting.credit(f"gateway_clearing:{attempt.gateway}", refund.amount)
    if refund.kind == "duplicate":
        debits = {"refunds_payable": refund.amount}
    else:
        debits = allocate(refund.amount, _capture_credits(session, attempt))
    return Entry(
        idempotency_key=f"refund:{refund.refund_id}",
        business_date=business_date(now),
        description=f"Refund {refund.refund_id} of {attempt.order_id} "
        f"(notice {notice.payment_code}): {refund.reason}"[:500],
        postings=(*(Posting.debit(a, fen) for a, fen in debits.items() if fen), clearing),
        metadata={"notice_id": str(notice.id), "refund_kind": refund.kind},
        ref_type="refund",
        ref_id=refund.refund_id,
    )


def _capture_credits(session: Session, attempt: PaymentAttempt) -> dict[str, int]:
    """The treasury legs of the attempt's capture entry: the weights a refund is split by."""
    entry = session.get(JournalEntry, attempt.journal_entry_id)
    assert entry is not None
    return {p.account.code: p.amount for p in entry.postings if p.direction == "C"}


def _fully_refunded(session: Session, notice: Notice) -> bool:
    done = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.notice_id == notice.id, Refund.kind == "requested", Refund.state == "succeeded"
        )
    )
    attempt = settling_attempt(session, notice.id)
    return attempt is not None and int(done or 0) >= attempt.amount
