"""Reconciliation runs and their outcomes, remittances to the treasury, finance users.

A run is keyed by (source, business date, file SHA-256): the same file twice is the same run.
A corrected file for the same day and source supersedes the earlier run (its entries reversed).
Every line of a file lands in exactly one outcome row (``reconciliation_items``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from clearing.db import Base
from clearing.ledger.models import BigId

RUN_KINDS = ("bill", "statement")
RUN_STATES = ("running", "succeeded", "failed", "superseded")
OUTCOMES = (
    "matched",
    "missing_internal",
    "missing_external",
    "amount_mismatch",
    "duplicate",
    "fee_mismatch",
    "cutoff",
    "settled",
    "unexplained_credit",
    "shortfall",
    "excess",
    "other",
)
EXCEPTION_STATES = ("open", "proposed", "resolved")
REMITTANCE_STATES = ("prepared", "sent", "confirmed")
ROLES = ("finance_officer", "auditor", "admin")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        UniqueConstraint("source", "business_date", "file_sha256"),
        CheckConstraint(_in("kind", RUN_KINDS), "kind"),
        CheckConstraint(_in("state", RUN_STATES), "state"),
        Index("ix_reconciliation_runs_business_date", "business_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    """alipay, wechatpay, unionpay (bills) or the fiscal bank account (statements)."""
    kind: Mapped[str] = mapped_column(String(16))
    business_date: Mapped[date] = mapped_column(Date)
    """The Asia/Shanghai day the file covers."""
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_format: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    started_by: Mapped[str] = mapped_column(String(100))
    """Who or what started it: a user name, ``scheduler``, ``cli:<user>``."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    """Lines per outcome."""
    totals: Mapped[dict[str, int]] = mapped_column(JSON)
    """Fen per outcome (signed sums of line amounts), plus fees."""
    error: Mapped[str | None] = mapped_column(Text)
    superseded_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("reconciliation_runs.id")
    )


class ReconciliationItem(Base):
    """One line's outcome (or one of our records the file lacks: ``missing_external``)."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        CheckConstraint(_in("outcome", OUTCOMES), "outcome"),
        CheckConstraint(_in("exception_state", EXCEPTION_STATES), "exception_state"),
        # A run's items are inserted together, so run_id follows the table's physical order: a
        # BRIN index finds a run's pages at almost no cost per insert (migration 0012). The few
        # exceptions of a run have their own partial index. SQLite builds both as b-trees.
        Index(
            "ix_reconciliation_items_run_id",
            "run_id",
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        ),
        Index(
            "ix_reconciliation_items_run_id_exceptions",
            "run_id",
            postgresql_where=text("exception_state IS NOT NULL"),
            sqlite_where=text("exception_state IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigId)
    """The run (``reconciliation_runs.id``). Not a per-row foreign key: triggers (migration 0008)
    check each INSERT/UPDATE statement's run ids at once and refuse deleting or re-keying a run
    that has items, so a million-item run pays one check, not a million."""
    line_no: Mapped[int | None] = mapped_column(Integer)
    """Line in the file; NULL for our records the file does not contain."""
    outcome: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))
    """payment, refund, settlement, other."""
    order_id: Mapped[str | None] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Signed fen as the file (or, for missing_external, our record) says."""
    expected_amount: Mapped[int | None] = mapped_column(BigInteger)
    """Signed fen our ledger expected, where there is one."""
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    """Fen."""
    expected_fee: Mapped[int | None] = mapped_column(BigInteger)
    """Fen."""
    detail: Mapped[str] = mapped_column(String(500))
    journal_entry_id: Mapped[int | None] = mapped_column(BigId)
    """``journal_entries.id``, checked per statement like ``run_id`` (migration 0008)."""
    exception_state: Mapped[str | None] = mapped_column(String(16))
    """NULL for matched lines; open -> proposed -> resolved for exceptions."""
    proposed_by: Mapped[str | None] = mapped_column(String(100))
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The adjusting entry proposed (postings, reason)."""
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution_note: Mapped[str | None] = mapped_column(String(500))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Remittance(Base):
    """A daily remittance batch to one treasury account (Dr treasury_payable / Cr fiscal_bank).

    ``sequence`` 1 is the day's batch; 2, 3, ... are top-ups for what settled later.
    """

    __tablename__ = "remittances"
    __table_args__ = (
        UniqueConstraint("treasury", "business_date", "sequence"),
        CheckConstraint(_in("state", REMITTANCE_STATES), "state"),
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("sequence >= 1", "sequence_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    treasury: Mapped[str] = mapped_column(String(64))
    business_date: Mapped[date] = mapped_column(Date)
    sequence: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Integer fen remitted."""
    state: Mapped[str] = mapped_column(String(16))
    voucher: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Lines by revenue classification code and budget level (fen)."""
    journal_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journal_entries.id"))
    prepared_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A finance officer, auditor (read-only) or admin."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(24))
    password_hash: Mapped[str] = mapped_column(String(200))
    """scrypt (clearing.apikeys.hash_password)."""
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserToken(Base):
    """An API token for scripts, or a web session: only a hash of the secret is stored."""

    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``api`` or ``session``."""
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
