"""Payment attempts, refunds, and the gateway notifications received.

At most one attempt settles a notice: ``settles_notice_id`` is set (to the notice id) only on the
attempt that paid it, and it is UNIQUE, so the database refuses a second settling attempt.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from clearing.db import Base
from clearing.ledger.models import BigId
from clearing.payments.states import AttemptState

ATTEMPT_STATES = tuple(s.value for s in AttemptState)
REFUND_STATES = ("submitted", "succeeded", "failed")
REFUND_KINDS = ("requested", "duplicate")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PaymentAttempt(Base):
    __tablename__ = "payment_attempts"
    __table_args__ = (
        CheckConstraint(_in("state", ATTEMPT_STATES), "state"),
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("amount = principal + late_fee", "amount_sum"),
        CheckConstraint(
            "settles_notice_id IS NULL OR settles_notice_id = notice_id", "settles_own_notice"
        ),
        Index("ix_payment_attempts_state_updated_at", "state", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), unique=True)
    """Our id at the gateway (out_trade_no / orderId)."""
    notice_id: Mapped[int] = mapped_column(BigId, ForeignKey("notices.id"), index=True)
    settles_notice_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    """The notice id on the one attempt that settled it; NULL on every other attempt."""
    gateway: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    routing_reason: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Integer fen fixed when the attempt started: principal + late fee as of that day."""
    principal: Mapped[int] = mapped_column(BigInteger)
    """Integer fen."""
    late_fee: Mapped[int] = mapped_column(BigInteger)
    """Integer fen."""
    business_date: Mapped[date] = mapped_column(Date)
    """Asia/Shanghai day the attempt started; it expires at the end of it."""
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    gateway_txn_id: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    journal_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(_in("state", REFUND_STATES), "state"),
        CheckConstraint(_in("kind", REFUND_KINDS), "kind"),
        CheckConstraint("amount > 0", "amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(32), unique=True)
    """Our refund id; the idempotency key at the gateway (out_request_no / out_refund_no)."""
    notice_id: Mapped[int] = mapped_column(BigId, ForeignKey("notices.id"), index=True)
    attempt_id: Mapped[int] = mapped_column(BigId, ForeignKey("payment_attempts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``requested`` by the department, or ``duplicate`` (automatic, for a double payment)."""
    state: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Integer fen."""
    reason: Mapped[str] = mapped_column(String(300))
    gateway_refund_id: Mapped[str | None] = mapped_column(String(64))
    failure: Mapped[str | None] = mapped_column(String(300))
    journal_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GatewayNotification(Base):
    """Every notify received, verified or not: the audit trail of what gateways told us."""

    __tablename__ = "gateway_notifications"
    __table_args__ = (Index("ix_gateway_notifications_order_id", "order_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    """captured, duplicate_capture, already_captured, rejected, amount_mismatch, ignored."""
    detail: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotifyNonce(Base):
    """Nonces and notify ids seen, so that a replayed notify is refused."""

    __tablename__ = "gateway_nonces"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
