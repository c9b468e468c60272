"""Reconciliation items: a BRIN index on run_id and a partial index of exceptions, instead of the
b-tree on (run_id, outcome).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

The b-tree on (run_id, outcome) took an entry per item: about a quarter of a 1,000,000-line
run's time (docs/performance.md, fourth session). A run's items are inserted by one statement,
so ``run_id`` follows the physical order of the table and a BRIN index (a few pages for millions
of rows, ``autosummarize`` so that new ranges are summarised by autovacuum) finds a run's pages;
the run's exceptions (a fraction of a percent of its items), listed and counted by the finance
pages, get a partial b-tree. SQLite has no BRIN: both are b-trees there.

Expand-compatible: no statement of the previous release needs the dropped index to be right, and
its queries (per-outcome totals of a run, a run's exceptions) use the new ones. On PostgreSQL the
indexes are built and the old one dropped ``CONCURRENTLY``: the table stays writable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EXCEPTIONS = "exception_state IS NOT NULL"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_reconciliation_items_run_id "
                "ON reconciliation_items USING brin (run_id) WITH (autosummarize = on)"
            )
            op.execute(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                "ix_reconciliation_items_run_id_exceptions "
                f"ON reconciliation_items (run_id) WHERE {EXCEPTIONS}"
            )
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_reconciliation_items_run_id_outcome")
        return
    op.create_index("ix_reconciliation_items_run_id", "reconciliation_items", ["run_id"])
    op.create_index(
        "ix_reconciliation_items_run_id_exceptions",
        "reconciliation_items",
        ["run_id"],
        sqlite_where=sa.text(EXCEPTIONS),
    )
    op.drop_index("ix_reconciliation_items_run_id_outcome", "reconciliation_items")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_reconciliation_items_run_id_outcome "
                "ON reconciliation_items (run_id, outcome)"
            )
            for name in ("run_id_exceptions", "run_id"):
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS ix_reconciliation_items_{name}")
        return
    op.create_index(
        "ix_reconciliation_items_run_id_outcome", "reconciliation_items", ["run_id", "outcome"]
    )
    op.drop_index("ix_reconciliation_items_run_id_exceptions", "reconciliation_items")
    op.drop_index("ix_reconciliation_items_run_id", "reconciliation_items")
