"""Notice tables: departments and their API keys, the catalogue, notices and their items,
and the idempotency keys of the department API.

Money columns are integer fen (``BigInteger``). Personal data is stored encrypted
(``*_enc``, see :mod:`clearing.pii`), with a masked copy for display and an HMAC for look-ups.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clearing.db import Base
from clearing.ledger.models import BigId

DEPARTMENT_KINDS = ("police", "school", "agency")
NOTICE_KINDS = ("traffic_fine", "tuition", "service_fee")
NOTICE_STATUSES = ("unpaid", "paid", "cancelled", "expired", "refunded")
BUDGET_LEVELS = ("central", "provincial", "city", "county")
IDEMPOTENCY_STATES = ("in_progress", "completed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Department(Base):
    """A collecting authority (traffic police unit, university, passport office)."""

    __tablename__ = "departments"
    __table_args__ = (CheckConstraint(_in("kind", DEPARTMENT_KINDS), "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str] = mapped_column(String(6))
    """6-digit administrative region code; the first six digits of every payment code."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """A department's API key: only the public prefix and a hash of the secret are stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(8), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(80))
    scopes: Mapped[str] = mapped_column(String(200))
    """Space-separated scopes, e.g. ``"notices:read notices:write"``."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    department: Mapped[Department] = relationship(lazy="joined")


class CatalogueItem(Base):
    """Something a department may bill for, with its standard price and remittance rules."""

    __tablename__ = "catalogue_items"
    __table_args__ = (
        CheckConstraint(_in("kind", NOTICE_KINDS), "kind"),
        CheckConstraint(_in("budget_level", BUDGET_LEVELS), "budget_level"),
        CheckConstraint("amount IS NULL OR amount > 0", "amount_positive"),
        CheckConstraint("max_amount > 0", "max_amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    """Standard unit price in integer fen; NULL when the amount is variable (set per notice)."""
    max_amount: Mapped[int] = mapped_column(BigInteger)
    """Largest unit price in integer fen a notice may set for a variable item."""
    late_fee_rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    """:func:`notices.fees.rule_to_dict` of the item's late-fee rule."""
    shares: Mapped[dict[str, int]] = mapped_column(JSON)
    """Treasury -> basis points, summing to 10000 (:func:`clearing.split.validate_shares`)."""
    revenue_code: Mapped[str] = mapped_column(String(16))
    """政府收支分类科目 code, e.g. ``"103050101"``."""
    budget_level: Mapped[str] = mapped_column(String(16))
    department_kinds: Mapped[list[str]] = mapped_column(JSON)
    """Department kinds that may use the item."""
    department_names: Mapped[list[str]] = mapped_column(JSON)
    """Departments (by name) that may use the item whatever their kind."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notice(Base):
    """A payment notice: a claim of a department on a payer. It posts nothing to the ledger."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint(_in("kind", NOTICE_KINDS), "kind"),
        CheckConstraint(_in("status", NOTICE_STATUSES), "status"),
        CheckConstraint("principal > 0", "principal_positive"),
        CheckConstraint("expires_on >= due_date", "expires_after_due"),
        Index("ix_notices_department_id_id", "department_id", "id"),
        Index("ix_notices_department_id_reference", "department_id", "reference"),
        Index("ix_notices_department_id_created_at", "department_id", "created_at"),
        Index("ix_notices_department_id_due_date", "department_id", "due_date"),
        Index("ix_notices_status_expires_on", "status", "expires_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"))
    payment_code: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    principal: Mapped[int] = mapped_column(BigInteger)
    """Sum of the item lines in integer fen, without any late fee; always > 0."""
    late_fee_rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The rule fixed when the notice was issued (:func:`notices.fees.rule_to_dict`)."""
    decision_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    """Last Asia/Shanghai calendar day to pay without a late fee."""
    expires_on: Mapped[date] = mapped_column(Date)
    """Last Asia/Shanghai calendar day the notice can be paid; then it becomes ``expired``."""
    reference: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500))
    payer_name_enc: Mapped[str] = mapped_column(String(700))
    """Sealed full name (up to 100 characters of 4-byte UTF-8 fits)."""
    payer_name_masked: Mapped[str] = mapped_column(String(100))
    payer_id_number_enc: Mapped[str | None] = mapped_column(String(200))
    payer_id_number_masked: Mapped[str | None] = mapped_column(String(32))
    payer_id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    """HMAC-SHA256 of the normalised ID number (:func:`clearing.pii.hash_id_number`)."""
    payer_phone_enc: Mapped[str | None] = mapped_column(String(200))
    return_url: Mapped[str | None] = mapped_column(String(500))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    items: Mapped[list[NoticeItem]] = relationship(
        back_populates="notice", lazy="selectin", order_by="NoticeItem.line_no"
    )
    department: Mapped[Department] = relationship(lazy="joined")


class NoticeItem(Base):
    """One line of a notice; the catalogue's names and rules are copied as they were at issue."""

    __tablename__ = "notice_items"
    __table_args__ = (
        UniqueConstraint("notice_id", "line_no"),
        CheckConstraint("quantity > 0", "quantity_positive"),
        CheckConstraint("unit_amount > 0", "unit_amount_positive"),
        CheckConstraint("amount > 0", "amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notice_id: Mapped[int] = mapped_column(BigId, ForeignKey("notices.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    catalogue_item_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("catalogue_items.id"), index=True
    )
    item_code: Mapped[str] = mapped_column(String(32))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    """Unit price in integer fen."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """Line total in integer fen: ``unit_amount * quantity``."""
    shares: Mapped[dict[str, int]] = mapped_column(JSON)
    revenue_code: Mapped[str] = mapped_column(String(16))
    budget_level: Mapped[str] = mapped_column(String(16))

    notice: Mapped[Notice] = relationship(back_populates="items")


class IdempotencyKey(Base):
    """A department's ``Idempotency-Key``: claimed before the work, completed with its response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("department_id", "key"),
        CheckConstraint(_in("state", IDEMPOTENCY_STATES), "state"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the method, path and canonical JSON body."""
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
