"""Ledger tables: accounts, journal entries, postings, and the hash chain over the journal.

The journal is append-only. On PostgreSQL the database itself refuses an unbalanced entry (a
deferred constraint trigger), a non-positive amount (CHECK) and any UPDATE or DELETE of entries,
postings and chain links (triggers); see ``alembic/versions/0001_ledger.py``.
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clearing.db import Base

#: BIGINT on PostgreSQL; INTEGER on SQLite so that it is the rowid alias and autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("type IN ('asset','liability','equity','revenue','expense')", "type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(128), unique=True)
    """e.g. ``gateway_clearing:alipay`` or ``treasury_payable:510100-city``; never changes."""
    type: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        Index("ix_journal_entries_ref", "ref_type", "ref_id"),
        Index("ix_journal_entries_business_date", "business_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    business_date: Mapped[date] = mapped_column(Date)
    """Asia/Shanghai calendar date the entry belongs to."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """UTC moment of posting; part of the hashed content."""
    description: Mapped[str] = mapped_column(String(500))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    ref_type: Mapped[str | None] = mapped_column(String(40))
    ref_id: Mapped[str | None] = mapped_column(String(64))
    reverses_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("journal_entries.id"), unique=True
    )
    """The entry this one reverses; unique, so an entry can be reversed only once."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical entry (see ``core.canonical_bytes``)."""

    postings: Mapped[list[Posting]] = relationship(
        back_populates="entry", lazy="selectin", order_by="Posting.id"
    )


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("direction IN ('D','C')", "direction"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_accounts.id"), index=True)
    direction: Mapped[str] = mapped_column(String(1))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Integer fen, always > 0; the direction says debit or credit."""
    currency: Mapped[str] = mapped_column(String(3))

    entry: Mapped[JournalEntry] = relationship(back_populates="postings")
    account: Mapped[Account] = relationship(lazy="joined")


class ChainLink(Base):
    """One link of the hash chain over the journal, appended by the sealer in commit order."""

    __tablename__ = "ledger_chain"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("journal_entries.id"), unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
