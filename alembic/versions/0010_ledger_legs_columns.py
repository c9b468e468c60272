"""Ledger, expand: an entry's ``legs`` and a posting's ``leg`` and ``entry_legs``, NULLable.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

See docs/decisions/0009-balance-check-once-per-entry.md. The expand half of that change:

- ``journal_entries.legs``: how many postings the entry has, stated by its writer;
- ``postings.leg``: the posting's place in its entry, 1..legs;
- ``postings.entry_legs``: a copy of the entry's legs.

All three are NULLable, with no constraint, and the balance triggers are 0001's: they still check
every entry, whoever wrote it. The previous release, which does not know the columns, keeps
working (its rows have NULLs there); the code of this release writes them always. SQLite: plain
``ALTER TABLE ... ADD COLUMN``, no rebuild.

Migration 0011 (the contract) backfills the NULLs and adds NOT NULL, the keys and the
once-per-entry check. It is applied only once no process of the previous release is left
(``clearing.migrate.OLDEST_SCHEMA``, docs/operations.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (("journal_entries", "legs"), ("postings", "leg"), ("postings", "entry_legs"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, sa.Column(column, sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on both (SQLite >= 3.35): the columns carry no key, index,
    # CHECK or trigger at this revision, so SQLite needs no rebuild either.
    for table, column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
