"""The audit log: who did what, to what, when, from where. Append-only, like the ledger: the
database refuses UPDATE, DELETE and TRUNCATE of ``audit_events`` (migration 0007)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from clearing.db import Base
from clearing.ledger.models import BigId


class AuditEvent(Base):
    """One audited action. ``details`` never holds secrets or personal data in clear
    (:func:`clearing.audit.record` scrubs it)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_actor", "actor_type", "actor_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    """``user`` (finance), ``department`` (API key), ``cli`` (an operator), ``system`` (a job)."""
    actor_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    """A dotted verb, e.g. ``apikey.revoke``, ``reconciliation.resolve``, ``user.login``."""
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(128))
