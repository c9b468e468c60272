"""Ledger: accounts, journal entries, postings, the hash chain, and the database backstops.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("journal_entries", "postings", "ledger_chain")

PG_FUNCTIONS = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation', HINT = 'correct a mistake with a reversing entry';
END $$;

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  eid bigint;
  legs int;
  bad record;
BEGIN
  IF TG_TABLE_NAME = 'postings' THEN eid := NEW.entry_id; ELSE eid := NEW.id; END IF;
  SELECT count(*) INTO legs FROM postings WHERE entry_id = eid;
  IF legs < 2 THEN
    RAISE EXCEPTION 'journal entry % has % posting(s); at least two are required', eid, legs
      USING ERRCODE = 'check_violation';
  END IF;
  SELECT currency, sum(CASE WHEN direction = 'D' THEN amount ELSE -amount END) AS diff
    INTO bad FROM postings WHERE entry_id = eid GROUP BY currency
    HAVING sum(CASE WHEN direction = 'D' THEN amount ELSE -amount END) IS DISTINCT FROM 0
    LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % is unbalanced in %: debits - credits = %',
      eid, bad.currency, bad.diff USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("type IN ('asset','liability','equity','revenue','expense')",
                           name="ck_ledger_accounts_type"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_accounts"),
        sa.UniqueConstraint("code", name="uq_ledger_accounts_code"),
    )
    op.create_table(
        "journal_entries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("ref_type", sa.String(40), nullable=True),
        sa.Column("ref_id", sa.String(64), nullable=True),
        sa.Column("reverses_id", BigId, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_journal_entries_idempotency_key"),
        sa.UniqueConstraint("reverses_id", name="uq_journal_entries_reverses_id"),
        sa.ForeignKeyConstraint(["reverses_id"], ["journal_entries.id"],
                                name="fk_journal_entries_reverses_id_journal_entries"),
    )
    op.create_index("ix_journal_entries_ref", "journal_entries", ["ref_type", "ref_id"])
    op.create_index("ix_journal_entries_business_date", "journal_entries", ["business_date"])
    op.create_table(
        "postings",
        sa.Column("id", BigId, nullable=False),
        sa.Column("entry_id", BigId, nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("direction", sa.String(1), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_postings_amount_positive"),
        sa.CheckConstraint("direction IN ('D','C')", name="ck_postings_direction"),
        sa.PrimaryKeyConstraint("id", name="pk_postings"),
        sa.ForeignKeyConstraint(["entry_id"], ["journal_entries.id"],
                                name="fk_postings_entry_id_journal_entries"),
        sa.ForeignKeyConstraint(["account_id"], ["ledger_accounts.id"],
                                name="fk_postings_account_id_ledger_accounts"),
    )
    op.create_index("ix_postings_entry_id", "postings", ["entry_id"])
    op.create_index("ix_postings_account_id", "postings", ["account_id"])
    op.create_table(
        "ledger_chain",
        sa.Column("seq", BigId, nullable=False, autoincrement=False),
        sa.Column("entry_id", BigId, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger_chain"),
        sa.UniqueConstraint("entry_id", name="uq_ledger_chain_entry_id"),
        sa.ForeignKeyConstraint(["entry_id"], ["journal_entries.id"],
                                name="fk_ledger_chain_entry_id_journal_entries"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_backstops()
    else:
        _sqlite_backstops()


def _postgres_backstops() -> None:
    op.execute(PG_FUNCTIONS)
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()")
    for table in ("journal_entries", "postings"):
        op.execute(f"CREATE CONSTRAINT TRIGGER {table}_balanced AFTER INSERT ON {table} "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                   "EXECUTE FUNCTION ledger_check_balanced()")


def _sqlite_backstops() -> None:
    for table in APPEND_ONLY:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op_name} on {table} "
                "is refused'); END")
    # SQLite has no deferred triggers: the balance is enforced when an entry is sealed.
    op.execute(
        "CREATE TRIGGER ledger_chain_balanced BEFORE INSERT ON ledger_chain "
        "WHEN (SELECT count(*) FROM postings WHERE entry_id = NEW.entry_id) < 2 "
        "OR EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.entry_id GROUP BY currency "
        "HAVING sum(CASE WHEN direction = 'D' THEN amount ELSE -amount END) != 0) "
        "BEGIN SELECT RAISE(ABORT, 'journal entry is unbalanced or has fewer than two "
        "postings'); END")


def downgrade() -> None:
    for table in ("ledger_chain", "postings", "journal_entries", "ledger_accounts"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_check_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
