"""Ledger tables: accounts, journal entries, postings, and the hash chain over the journal.

The journal is append-only. On PostgreSQL the database itself refuses an unbalanced entry (a
deferred constraint trigger), a non-positive amount (CHECK) and any UPDATE or DELETE of entries,
postings and chain links (triggers); see ``alembic/versions/0001_ledger.py``.

An entry states how many postings it has (``legs``) and each posting its place in it (``leg``,
1..legs, unique per entry, checked against a copy of the entry's legs that a composite foreign
key ties to the entry). So once the entry's transaction has committed with ``legs`` postings
(the deferred check, once per entry), every place is taken and no posting can ever be added to it.
See ``alembic/versions/0011_balance_check_once_per_entry.py`` and
docs/decisions/0009-balance-check-once-per-entry.md. The models describe the head (0011); the
code also runs on 0010 (``clearing.migrate.OLDEST_SCHEMA``), where the columns are NULLable and
rows written before it or by the previous release have NULLs there: it writes them always and
reads postings in ``(leg, id)`` order, which is the order of ids for such an entry, as 0011's
backfill numbers them.
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
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
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
        CheckConstraint("legs >= 2", "legs_at_least_two"),
        UniqueConstraint("id", "legs"),  # the target of the postings' (entry_id, entry_legs)
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
    legs: Mapped[int] = mapped_column(SmallInteger)
    """How many postings the entry has, stated by its writer; checked at commit (PostgreSQL) or
    when sealed (SQLite)."""

    postings: Mapped[list[Posting]] = relationship(
        back_populates="entry",
        lazy="selectin",
        # leg, then id: an entry written before 0011's backfill (legs NULL) is in order of id
        order_by=lambda: [Posting.leg, Posting.id],
        primaryjoin="JournalEntry.id == foreign(Posting.entry_id)",
    )


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("direction IN ('D','C')", "direction"),
        CheckConstraint("leg BETWEEN 1 AND entry_legs", "leg_in_entry"),
        ForeignKeyConstraint(
            ["entry_id", "entry_legs"], ["journal_entries.id", "journal_entries.legs"]
        ),
        UniqueConstraint("entry_id", "leg"),  # also the index of the lookups by entry_id
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_accounts.id"), index=True)
    direction: Mapped[str] = mapped_column(String(1))
    amount: Mapped[int] = mapped_column(BigInteger)
    """Integer fen, always > 0; the direction says debit or credit."""
    currency: Mapped[str] = mapped_column(String(3))
    leg: Mapped[int] = mapped_column(SmallInteger)
    """The posting's place in its entry, 1..``entry_legs``: the order of ``Entry.postings``."""
    entry_legs: Mapped[int] = mapped_column(SmallInteger)
    """A copy of the entry's ``legs``, so that a CHECK and the foreign key bound ``leg``."""

    entry: Mapped[JournalEntry] = relationship(
        back_populates="postings", primaryjoin="JournalEntry.id == foreign(Posting.entry_id)"
    )
    account: Mapped[Account] = relationship(lazy="joined")


class ChainLink(Base):
    """One link of the hash chain over the journal, appended by the sealer in commit order."""

    __tablename__ = "ledger_chain"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("journal_entries.id"), unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
