"""reconciliation_items.run_id and journal_entry_id are checked by triggers (migration 0008; per
statement on PostgreSQL), not by per-row foreign keys: the same rules hold on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import IntegrityError

from clearing.db import transaction
from reconciliation.models import ReconciliationItem, ReconciliationRun

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def _run(session, sha: str = "0" * 64) -> int:
    run = ReconciliationRun(
        source="alipay",
        kind="bill",
        business_date=date(2026, 11, 27),
        file_name="x",
        file_sha256=sha,
        file_format="alipay",
        state="running",
        started_by="t",
        started_at=NOW,
        counts={},
        totals={},
        line_count=0,
    )
    session.add(run)
    session.flush()
    return run.id


def _items(run_id: int, n: int = 3) -> list[dict[str, object]]:
    return [
        {
            "run_id": run_id,
            "line_no": i,
            "outcome": "matched",
            "kind": "payment",
            "amount": 100,
            "fee": 0,
            "detail": "",
        }
        for i in range(1, n + 1)
    ]


def _refused(db, problem: str, statement, params=None) -> None:
    with pytest.raises(IntegrityError, match=problem), transaction(db.sessions) as s:
        s.execute(statement, params)


def test_items_of_an_existing_run_are_accepted(db):
    with transaction(db.sessions) as s:
        run_id = _run(s)
        s.execute(insert(ReconciliationItem), _items(run_id))
        s.execute(update(ReconciliationItem).values(detail="checked"))


def test_an_item_naming_no_run_is_refused(db):
    with transaction(db.sessions) as s:
        run_id = _run(s)
    _refused(
        db,
        "names no reconciliation run",
        insert(ReconciliationItem),
        _items(run_id) + _items(run_id + 1, 1),
    )
    with transaction(db.sessions) as s:
        s.execute(insert(ReconciliationItem), _items(run_id))
    _refused(
        db, "names no reconciliation run", update(ReconciliationItem).values(run_id=run_id + 1)
    )


def test_a_run_with_items_cannot_be_deleted_or_rekeyed(db):
    with transaction(db.sessions) as s:
        run_id = _run(s)
        empty_id = _run(s, "1" * 64)
        s.execute(insert(ReconciliationItem), _items(run_id))
    _refused(db, "has items", delete(ReconciliationRun).where(ReconciliationRun.id == run_id))
    _refused(
        db,
        "has items",
        update(ReconciliationRun).where(ReconciliationRun.id == run_id).values(id=run_id + 100),
    )
    with transaction(db.sessions) as s:
        s.execute(delete(ReconciliationRun).where(ReconciliationRun.id == empty_id))


def test_an_item_naming_no_journal_entry_is_refused(db):
    with transaction(db.sessions) as s:
        run_id = _run(s)
        s.execute(insert(ReconciliationItem), _items(run_id))
    bad = {**_items(run_id, 1)[0], "journal_entry_id": 999_999}
    _refused(db, "names no journal entry", insert(ReconciliationItem), [bad])
    _refused(
        db, "names no journal entry", update(ReconciliationItem).values(journal_entry_id=999_999)
    )


def test_runs_cannot_be_truncated_while_items_name_them(pg):
    with transaction(pg.sessions) as s:
        s.execute(insert(ReconciliationItem), _items(_run(s)))
    with pytest.raises(IntegrityError, match="has items"), pg.engine.begin() as conn:
        conn.execute(text("TRUNCATE reconciliation_runs CASCADE"))
