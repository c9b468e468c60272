"""Department webhooks: the endpoint of each department, the outbox of events about its notices,
and the log of every delivery attempt.

``department_events`` is an outbox: an event is inserted in the same transaction that changes the
notice, and a job delivers it later (docs/decisions/0004-department-events-outbox.md). The
retry schedule is the ``next_attempt_at`` column, not a queue, so it survives a Redis restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from clearing.db import Base
from clearing.ledger.models import BigId

EVENT_TYPES = ("notice.paid", "notice.refunded", "notice.expired")
EVENT_STATES = ("pending", "delivered", "failed", "no_webhook")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class DepartmentWebhook(Base):
    """Where a department receives its events, and the secret we sign them with."""

    __tablename__ = "department_webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    secret_enc: Mapped[str] = mapped_column(String(200))
    """The signing secret, encrypted with the PII key ring (aad ``department_webhook:<dept id>``).
    Encrypted, not hashed: signing an HMAC needs the secret itself."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DepartmentEvent(Base):
    """Something that happened to a notice, to tell its department; recorded once per type."""

    __tablename__ = "department_events"
    __table_args__ = (
        UniqueConstraint("notice_id", "type"),
        CheckConstraint(_in("type", EVENT_TYPES), "type"),
        CheckConstraint(_in("state", EVENT_STATES), "state"),
        CheckConstraint("attempts >= 0", "attempts_not_negative"),
        CheckConstraint(
            "state <> 'pending' OR next_attempt_at IS NOT NULL", "pending_is_scheduled"
        ),
        Index("ix_department_events_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_department_events_department_id_id", "department_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"))
    notice_id: Mapped[int] = mapped_column(BigId, ForeignKey("notices.id"))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The event's ``data``: notice id, payment code, reference, status; amounts as yuan strings."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Delivery attempts made so far (successful or not)."""
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """UTC moment the event is next due; a claiming worker moves it forward by its lease.
    NULL once the event is no longer pending."""
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One HTTP attempt to deliver an event: the delivery log."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("department_events.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(Integer)
    """1 for the first attempt of the event."""
    url: Mapped[str] = mapped_column(String(500))
    status_code: Mapped[int | None] = mapped_column(Integer)
    """The receiver's HTTP status; NULL when no response came (timeout, refused connection)."""
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)
    """Wall-clock milliseconds of the HTTP exchange."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
