"""reconciliation_items: per-statement checks instead of per-row foreign keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

A run inserts all its items (a million and more) in one statement. The foreign keys
``reconciliation_items.run_id -> reconciliation_runs.id`` and ``journal_entry_id ->
journal_entries.id`` checked every row on its own (PostgreSQL: one ``SELECT ... FOR KEY SHARE`` of
the same run row per item, 7-13 s of a 1,000,000-line run, and 1.4-2.7 s for the journal entry,
NULL on almost every item). The same rules are now enforced by triggers:

- PostgreSQL: after each INSERT or UPDATE *statement* on ``reconciliation_items``, the distinct
  run ids of the new rows (a transition table) must all exist, and are locked ``FOR KEY SHARE`` as
  the foreign key locked them (once per run, not once per row); the distinct non-NULL journal
  entry ids must exist (journal entries are append-only, migration 0001: one that exists stays).
  A run that items name cannot be deleted, nor its id changed (the foreign key's ``NO ACTION``),
  and ``reconciliation_runs`` cannot be truncated while items exist (the foreign key refused a
  TRUNCATE without the items; ``CASCADE`` no longer reaches them).
- SQLite: the same rules as row triggers (cheap there; SQLite has one writer at a time).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RUN_FK = "fk_reconciliation_items_run_id_reconciliation_runs"
ENTRY_FK = "fk_reconciliation_items_journal_entry_id_journal_entries"
NO_RUN = "reconciliation_items.run_id names no reconciliation run"
NO_ENTRY = "reconciliation_items.journal_entry_id names no journal entry"
IN_USE = "the reconciliation run has items"

PG_FUNCTIONS = f"""
CREATE FUNCTION reconciliation_items_check_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  runs bigint[] := ARRAY(SELECT DISTINCT run_id FROM new_items);
  entries bigint[] := ARRAY(SELECT DISTINCT journal_entry_id FROM new_items
                            WHERE journal_entry_id IS NOT NULL);
  found bigint;
BEGIN
  PERFORM 1 FROM reconciliation_runs WHERE id = ANY (runs) FOR KEY SHARE;
  GET DIAGNOSTICS found = ROW_COUNT;
  IF found < cardinality(runs) THEN
    RAISE EXCEPTION '{NO_RUN}' USING ERRCODE = 'foreign_key_violation';
  END IF;
  IF cardinality(entries) > 0 AND
     (SELECT count(*) FROM journal_entries WHERE id = ANY (entries)) < cardinality(entries) THEN
    RAISE EXCEPTION '{NO_ENTRY}' USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION reconciliation_runs_keep_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM reconciliation_items WHERE run_id = OLD.id) THEN
    RAISE EXCEPTION '{IN_USE}: % of run % is refused', TG_OP, OLD.id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE FUNCTION reconciliation_runs_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM reconciliation_items) THEN
    RAISE EXCEPTION '{IN_USE}: TRUNCATE of reconciliation_runs is refused'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$;
"""

PG_TRIGGERS = (
    "CREATE TRIGGER reconciliation_items_refs_insert AFTER INSERT ON reconciliation_items "
    "REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT "
    "EXECUTE FUNCTION reconciliation_items_check_refs()",
    "CREATE TRIGGER reconciliation_items_refs_update AFTER UPDATE ON reconciliation_items "
    "REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT "
    "EXECUTE FUNCTION reconciliation_items_check_refs()",
    "CREATE TRIGGER reconciliation_runs_keep_items_delete BEFORE DELETE ON reconciliation_runs "
    "FOR EACH ROW EXECUTE FUNCTION reconciliation_runs_keep_items()",
    "CREATE TRIGGER reconciliation_runs_keep_items_rekey BEFORE UPDATE OF id ON "
    "reconciliation_runs FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) "
    "EXECUTE FUNCTION reconciliation_runs_keep_items()",
    "CREATE TRIGGER reconciliation_runs_no_truncate BEFORE TRUNCATE ON reconciliation_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION reconciliation_runs_no_truncate()",
)

_NO_RUN_WHEN = "NOT EXISTS (SELECT 1 FROM reconciliation_runs WHERE id = NEW.run_id)"
_NO_ENTRY_WHEN = (
    "NEW.journal_entry_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM journal_entries WHERE id = NEW.journal_entry_id)"
)
_IN_USE_WHEN = "EXISTS (SELECT 1 FROM reconciliation_items WHERE run_id = OLD.id)"
SQLITE_TRIGGERS = (
    ("reconciliation_items_run_insert", "INSERT", "reconciliation_items", _NO_RUN_WHEN, NO_RUN),
    (
        "reconciliation_items_run_update",
        "UPDATE OF run_id",
        "reconciliation_items",
        _NO_RUN_WHEN,
        NO_RUN,
    ),
    (
        "reconciliation_items_entry_insert",
        "INSERT",
        "reconciliation_items",
        _NO_ENTRY_WHEN,
        NO_ENTRY,
    ),
    (
        "reconciliation_items_entry_update",
        "UPDATE OF journal_entry_id",
        "reconciliation_items",
        _NO_ENTRY_WHEN,
        NO_ENTRY,
    ),
    (
        "reconciliation_runs_keep_items_delete",
        "DELETE",
        "reconciliation_runs",
        _IN_USE_WHEN,
        IN_USE,
    ),
    (
        "reconciliation_runs_keep_items_rekey",
        "UPDATE OF id",
        "reconciliation_runs",
        f"OLD.id IS NOT NEW.id AND {_IN_USE_WHEN}",
        IN_USE,
    ),
)
PG_NAMES = (
    ("reconciliation_items", "reconciliation_items_refs_insert"),
    ("reconciliation_items", "reconciliation_items_refs_update"),
    ("reconciliation_runs", "reconciliation_runs_keep_items_delete"),
    ("reconciliation_runs", "reconciliation_runs_keep_items_rekey"),
    ("reconciliation_runs", "reconciliation_runs_no_truncate"),
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("reconciliation_items", schema=None) as batch_op:
        batch_op.drop_constraint(RUN_FK, type_="foreignkey")
        batch_op.drop_constraint(ENTRY_FK, type_="foreignkey")
    if _postgres():
        op.execute(PG_FUNCTIONS)
        for statement in PG_TRIGGERS:
            op.execute(statement)
        return
    for name, event, table, when, problem in SQLITE_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {when} "
            f"BEGIN SELECT RAISE(ABORT, '{problem}'); END"
        )


def downgrade() -> None:
    if _postgres():
        for table, name in PG_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS reconciliation_items_check_refs()")
        op.execute("DROP FUNCTION IF EXISTS reconciliation_runs_keep_items()")
        op.execute("DROP FUNCTION IF EXISTS reconciliation_runs_no_truncate()")
    else:
        for name, *_ in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("reconciliation_items", schema=None) as batch_op:
        batch_op.create_foreign_key(RUN_FK, "reconciliation_runs", ["run_id"], ["id"])
        batch_op.create_foreign_key(ENTRY_FK, "journal_entries", ["journal_entry_id"], ["id"])
