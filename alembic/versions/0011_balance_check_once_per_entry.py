"""Ledger, contract: an entry states its legs; the balance is checked once per entry, not once
per row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

See docs/decisions/0009-balance-check-once-per-entry.md. Migration 0010 added the columns,
NULLable; this one:

- backfills the rows where they are NULL (written before 0010, or by the previous release during
  the rolling deploy): ``legs`` is the entry's count of postings, ``leg`` the posting's rank by id
  within its entry, ``entry_legs`` the entry's legs. Rows the current code wrote are kept as they
  are. An entry with fewer than two postings (PostgreSQL refused such entries at commit; SQLite
  could hold one, unsealed), or whose stated legs are not its count of postings, stops the
  upgrade, named;
- ``journal_entries.legs`` NOT NULL, >= 2; UNIQUE (id, legs) is the target of the postings'
  foreign key;
- ``postings.leg`` and ``postings.entry_legs`` NOT NULL; CHECK (leg BETWEEN 1 AND entry_legs),
  UNIQUE (entry_id, leg) (it replaces the index ``ix_postings_entry_id``: same leading column),
  and the foreign key becomes (entry_id, entry_legs) -> journal_entries (id, legs);
- PostgreSQL: the deferred constraint trigger stays on ``journal_entries`` only (the one on
  ``postings`` is dropped) and checks, at the commit of the entry's transaction, that the entry
  has exactly ``legs`` postings and balances per currency, in one query when it has one currency.
  After that commit every place 1..legs is taken, so no posting can be added to the entry;
- SQLite: the same keys (the tables are rebuilt); the check at sealing (``ledger_chain_balanced``)
  also compares the count of postings with ``legs``.

A contract step: the previous release inserts entries without ``legs``, which NOT NULL refuses.
Apply it only once no process of that release is left (``clearing.migrate.OLDEST_SCHEMA`` is
0010; docs/operations.md). On PostgreSQL it takes both tables ACCESS EXCLUSIVE for the backfill
and the new keys (the journal is append-only: no job can backfill it), so on a large ledger run it
in a quiet hour. The downgrade returns to 0010: the columns stay, NULLable, with their values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import conv

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Final names (conv, what op.f returns): alembic would apply the models' naming convention to a
# given name again (0001's CHECKs are named ck_postings_ck_postings_... that way). The models'.
ENTRY_FK = conv("fk_postings_entry_id_journal_entries")
ENTRY_LEGS_UQ = conv("uq_journal_entries_id_legs")
LEGS_CK = conv("ck_journal_entries_legs_at_least_two")
LEG_UQ = conv("uq_postings_entry_id_leg")
LEG_CK = conv("ck_postings_leg_in_entry")
MAX_LEGS = 32_767  # SMALLINT

# Entries that cannot state their legs (fewer than two postings, or more than a SMALLINT
# numbers), or that state legs (the current code, at 0010) other than their count of postings.
UNNUMBERABLE = f"""
SELECT id FROM (
  SELECT e.id, e.legs, (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) AS n
  FROM journal_entries e
) AS counted
WHERE n NOT BETWEEN 2 AND {MAX_LEGS} OR n <> coalesce(legs, n)
ORDER BY id LIMIT 20
"""
# Only the NULLs: rows written before 0010 or by the previous release during the deploy. Rows
# the current code wrote (legs, leg and entry_legs set) are kept.
BACKFILL = (
    "UPDATE journal_entries SET legs = "
    "(SELECT count(*) FROM postings WHERE postings.entry_id = journal_entries.id) "
    "WHERE legs IS NULL",
    "UPDATE postings SET leg = ranked.leg, entry_legs = ranked.legs FROM ("
    "SELECT p.id, row_number() OVER (PARTITION BY p.entry_id ORDER BY p.id) AS leg, e.legs "
    "FROM postings p JOIN journal_entries e ON e.id = p.entry_id WHERE p.leg IS NULL) AS ranked "
    "WHERE ranked.id = postings.id",
)
COLUMNS = (("journal_entries", "legs"), ("postings", "leg"), ("postings", "entry_legs"))
# PostgreSQL: both tables at once, before anything else, so that the backfill and the DDL do not
# upgrade their locks one table at a time behind the writers (a deadlock).
PG_LOCK = "LOCK TABLE journal_entries, postings IN ACCESS EXCLUSIVE MODE"

_SIGNED = "CASE WHEN direction = 'D' THEN amount ELSE -amount END"
PG_CHECK_ONCE = f"""
CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  lo text;
  hi text;
  diff numeric;
  bad record;
BEGIN
  -- One query when the entry has one currency (a capture, a refund): count and net together.
  SELECT count(*), min(currency), max(currency), sum({_SIGNED})
    INTO n, lo, hi, diff FROM postings WHERE entry_id = NEW.id;
  IF n <> NEW.legs THEN
    RAISE EXCEPTION 'journal entry % has % posting(s); it states % legs', NEW.id, n, NEW.legs
      USING ERRCODE = 'check_violation';
  END IF;
  IF lo = hi THEN
    IF diff <> 0 THEN
      RAISE EXCEPTION 'journal entry % is unbalanced in %: debits - credits = %', NEW.id, lo, diff
        USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
  END IF;
  SELECT currency, sum({_SIGNED}) AS diff INTO bad FROM postings WHERE entry_id = NEW.id
    GROUP BY currency HAVING sum({_SIGNED}) <> 0 ORDER BY currency LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % is unbalanced in %: debits - credits = %',
      NEW.id, bad.currency, bad.diff USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
"""
# 0001's function, verbatim (the downgrade restores it).
PG_CHECK_PER_ROW = """
CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
PG_POSTINGS_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()"
)
PG_APPEND_ONLY = ("journal_entries_append_only", "postings_append_only")

# SQLite: a table rebuilt by batch mode loses its triggers; these are 0001's, verbatim.
SQLITE_APPEND_ONLY = {
    f"{table}_no_{op_name.lower()}": (
        f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op_name} on {table} "
        "is refused'); END"
    )
    for table in ("journal_entries", "postings")
    for op_name in ("UPDATE", "DELETE")
}
_UNBALANCED = (
    "EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.entry_id GROUP BY currency "
    "HAVING sum(CASE WHEN direction = 'D' THEN amount ELSE -amount END) != 0)"
)
SQLITE_SEAL_CHECK = (
    "CREATE TRIGGER ledger_chain_balanced BEFORE INSERT ON ledger_chain "
    "WHEN (SELECT count(*) FROM postings WHERE entry_id = NEW.entry_id) "
    "IS NOT (SELECT legs FROM journal_entries WHERE id = NEW.entry_id) "
    f"OR {_UNBALANCED} "
    "BEGIN SELECT RAISE(ABORT, 'journal entry is unbalanced or does not have the postings its "
    "legs state'); END"
)
SQLITE_SEAL_CHECK_0001 = (
    "CREATE TRIGGER ledger_chain_balanced BEFORE INSERT ON ledger_chain "
    "WHEN (SELECT count(*) FROM postings WHERE entry_id = NEW.entry_id) < 2 "
    f"OR {_UNBALANCED} "
    "BEGIN SELECT RAISE(ABORT, 'journal entry is unbalanced or has fewer than two "
    "postings'); END"
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(PG_LOCK)
    _refuse_unnumberable_entries()
    if _postgres():
        _upgrade_postgres()
        return
    with _sqlite_rebuilding():
        _upgrade_sqlite()


def _refuse_unnumberable_entries() -> None:
    ids = list(op.get_bind().execute(sa.text(UNNUMBERABLE)).scalars())
    if ids:
        raise RuntimeError(
            f"journal entries {ids} have fewer than two postings (or more than {MAX_LEGS}, or "
            "not the count their legs state): an entry cannot state its legs. Such an entry is "
            "unbalanced; repair the ledger before this upgrade."
        )


def _backfill() -> None:
    for statement in BACKFILL:
        op.execute(statement)


def _upgrade_postgres() -> None:
    for name in PG_APPEND_ONLY:  # the backfill UPDATEs; back on below, in this transaction
        op.execute(f"ALTER TABLE {name.removesuffix('_append_only')} DISABLE TRIGGER {name}")
    _backfill()
    for name in PG_APPEND_ONLY:
        op.execute(f"ALTER TABLE {name.removesuffix('_append_only')} ENABLE TRIGGER {name}")
    op.alter_column("journal_entries", "legs", nullable=False)
    op.create_check_constraint(LEGS_CK, "journal_entries", "legs >= 2")
    op.create_unique_constraint(ENTRY_LEGS_UQ, "journal_entries", ["id", "legs"])
    op.alter_column("postings", "leg", nullable=False)
    op.alter_column("postings", "entry_legs", nullable=False)
    op.create_check_constraint(LEG_CK, "postings", "leg BETWEEN 1 AND entry_legs")
    op.create_unique_constraint(LEG_UQ, "postings", ["entry_id", "leg"])
    op.drop_index(conv("ix_postings_entry_id"), "postings")
    op.drop_constraint(ENTRY_FK, "postings", type_="foreignkey")
    op.create_foreign_key(
        ENTRY_FK, "postings", "journal_entries", ["entry_id", "entry_legs"], ["id", "legs"]
    )
    op.execute("DROP TRIGGER postings_balanced ON postings")
    op.execute(PG_CHECK_ONCE)


def _upgrade_sqlite() -> None:
    _drop_sqlite_triggers()
    _backfill()
    with op.batch_alter_table("journal_entries") as batch:
        batch.alter_column("legs", existing_type=sa.SmallInteger(), nullable=False)
        batch.create_check_constraint(LEGS_CK, "legs >= 2")
        batch.create_unique_constraint(ENTRY_LEGS_UQ, ["id", "legs"])
    with op.batch_alter_table("postings") as batch:
        batch.alter_column("leg", existing_type=sa.SmallInteger(), nullable=False)
        batch.alter_column("entry_legs", existing_type=sa.SmallInteger(), nullable=False)
        batch.create_check_constraint(LEG_CK, "leg BETWEEN 1 AND entry_legs")
        batch.create_unique_constraint(LEG_UQ, ["entry_id", "leg"])
        batch.drop_index(conv("ix_postings_entry_id"))
        batch.drop_constraint(ENTRY_FK, type_="foreignkey")
        batch.create_foreign_key(
            ENTRY_FK, "journal_entries", ["entry_id", "entry_legs"], ["id", "legs"]
        )
    _create_sqlite_triggers(SQLITE_SEAL_CHECK)


def downgrade() -> None:
    if _postgres():
        _downgrade_postgres()
        return
    with _sqlite_rebuilding():
        _downgrade_sqlite()


def _downgrade_postgres() -> None:
    op.execute(PG_LOCK)
    op.execute(PG_CHECK_PER_ROW)
    op.execute(PG_POSTINGS_TRIGGER)
    op.drop_constraint(ENTRY_FK, "postings", type_="foreignkey")
    op.create_foreign_key(ENTRY_FK, "postings", "journal_entries", ["entry_id"], ["id"])
    op.create_index(conv("ix_postings_entry_id"), "postings", ["entry_id"])
    op.drop_constraint(LEG_UQ, "postings", type_="unique")
    op.drop_constraint(LEG_CK, "postings", type_="check")
    op.drop_constraint(ENTRY_LEGS_UQ, "journal_entries", type_="unique")
    op.drop_constraint(LEGS_CK, "journal_entries", type_="check")
    for table, column in COLUMNS:  # 0010's columns stay, NULLable, with their values
        op.alter_column(table, column, existing_type=sa.SmallInteger(), nullable=True)


def _downgrade_sqlite() -> None:
    _drop_sqlite_triggers()
    with op.batch_alter_table("postings") as batch:
        batch.drop_constraint(ENTRY_FK, type_="foreignkey")
        batch.create_foreign_key(ENTRY_FK, "journal_entries", ["entry_id"], ["id"])
        batch.create_index(conv("ix_postings_entry_id"), ["entry_id"])
        batch.drop_constraint(LEG_UQ, type_="unique")
        batch.drop_constraint(LEG_CK, type_="check")
        batch.alter_column("leg", existing_type=sa.SmallInteger(), nullable=True)
        batch.alter_column("entry_legs", existing_type=sa.SmallInteger(), nullable=True)
    with op.batch_alter_table("journal_entries") as batch:
        batch.drop_constraint(ENTRY_LEGS_UQ, type_="unique")
        batch.drop_constraint(LEGS_CK, type_="check")
        batch.alter_column("legs", existing_type=sa.SmallInteger(), nullable=True)
    _create_sqlite_triggers(SQLITE_SEAL_CHECK_0001)


def _drop_sqlite_triggers() -> None:
    for name in (*SQLITE_APPEND_ONLY, "ledger_chain_balanced"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _create_sqlite_triggers(seal_check: str) -> None:
    for statement in SQLITE_APPEND_ONLY.values():
        op.execute(statement)
    op.execute(seal_check)


@contextmanager
def _sqlite_rebuilding() -> Iterator[None]:
    """Foreign keys off, and the legacy RENAME, while batch mode rebuilds the tables.

    Batch mode copies a table, drops it and renames the copy. ``journal_entries`` is a parent
    table: with foreign keys on, the drop's implicit DELETE fails on the postings, links and
    attempts that reference it (deferring them does not help: the violations it counts outlive
    the rename), and the RENAME fails on migration 0008's triggers, which name journal_entries.
    ``PRAGMA foreign_keys`` is a no-op inside a transaction, so the migration's transaction is
    committed first (empty so far, or holding the earlier migrations of the same run, 0010 with
    its revision: a consistent state); the rebuild runs in a transaction of its own, checked by
    ``PRAGMA foreign_key_check`` and committed (or rolled back) before foreign keys are back on.
    Alembic then records the revision in a new transaction, as it would have."""
    raw = op.get_bind().connection.driver_connection
    _between_transactions(raw, "COMMIT", "PRAGMA foreign_keys = OFF")
    raw.execute("PRAGMA legacy_alter_table = ON")
    done = False
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:10]}")
        done = True
    finally:
        raw.execute("PRAGMA legacy_alter_table = OFF")
        _between_transactions(raw, "COMMIT" if done else "ROLLBACK", "PRAGMA foreign_keys = ON")


def _between_transactions(raw, end: str, pragma: str) -> None:  # type: ignore[no-untyped-def]
    if raw.in_transaction:
        raw.execute(end)
    raw.execute(pragma)
    raw.execute("BEGIN IMMEDIATE")
