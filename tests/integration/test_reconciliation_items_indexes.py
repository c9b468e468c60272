"""Migration 0012: the items of reconciliation runs are found by a BRIN index on ``run_id`` and
a partial index of exceptions (PostgreSQL; b-trees on SQLite), instead of a b-tree entry per item
on (run_id, outcome). Up, down and up again on both databases; on PostgreSQL the finance
queries of a run use the new indexes on a table holding several runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from alembic import command
from clearing import migrate
from clearing.db import make_engine
from tests.conftest import PG_URL, unavailable
from tests.support.databases import empty_database

OLD = [("ix_reconciliation_items_run_id_outcome", ["run_id", "outcome"])]
NEW = [
    ("ix_reconciliation_items_run_id", ["run_id"]),
    ("ix_reconciliation_items_run_id_exceptions", ["run_id"]),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, empty: this test migrates it up and down."""
    with empty_database(request.param, PG_URL, tmp_path, "items", unavailable=unavailable) as url:
        yield url


def _indexes(engine: Engine) -> list[tuple[str, list[str]]]:
    return sorted(
        (ix["name"], list(ix["column_names"]))
        for ix in inspect(engine).get_indexes("reconciliation_items")
    )


def test_up_down_and_up_again(url):
    migrate.upgrade(url, "0011")
    engine = make_engine(url)
    try:
        assert _indexes(engine) == OLD
        migrate.upgrade(url)
        assert _indexes(engine) == NEW
        migrate.check(url)  # the models describe the same indexes
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                defs = (
                    conn.execute(
                        text(
                            "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'ix_%'"
                            " AND tablename = 'reconciliation_items' ORDER BY indexname"
                        )
                    )
                    .scalars()
                    .all()
                )
            assert "USING brin (run_id) WITH (autosummarize='on')" in defs[0]
            assert defs[1].endswith("USING btree (run_id) WHERE (exception_state IS NOT NULL)")
        command.downgrade(migrate.alembic_config(url), "0011")
        assert _indexes(engine) == OLD
        migrate.upgrade(url)
        assert _indexes(engine) == NEW
    finally:
        engine.dispose()


ITEMS = """
INSERT INTO reconciliation_items (run_id, line_no, outcome, kind, order_id, amount, fee, detail,
                                  exception_state)
SELECT :run, n, CASE WHEN n % 500 = 0 THEN 'amount_mismatch' ELSE 'matched' END, 'payment',
       'O' || :run || '-' || n, 100, 0, '', CASE WHEN n % 500 = 0 THEN 'open' END
FROM generate_series(1, :n) AS n
"""


@pytest.mark.postgres
@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_the_finance_queries_of_a_run_use_the_new_indexes(url):
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for run in range(1, 7):
                conn.execute(
                    text(
                        "INSERT INTO reconciliation_runs (id, source, kind, business_date, "
                        "file_name, file_sha256, file_format, state, started_by, started_at, "
                        "line_count, counts, totals) VALUES (:run, 'unionpay', 'bill', "
                        "DATE '2026-11-01' + :run, 'f', :sha, 'unionpay', 'succeeded', 't', "
                        "now(), 0, '{}', '{}')"
                    ),
                    {"run": run, "sha": f"{run:064d}"},
                )
                conn.execute(text(ITEMS), {"run": run, "n": 20_000})
            conn.execute(text("SELECT brin_summarize_new_values('ix_reconciliation_items_run_id')"))
            conn.execute(text("ANALYZE reconciliation_items"))
        queries = {
            # queries.outcome_totals
            "SELECT outcome, count(*), sum(amount) FROM reconciliation_items WHERE run_id = 3 "
            "GROUP BY outcome": "ix_reconciliation_items_run_id",
            # queries.exceptions, service.exceptions
            "SELECT * FROM reconciliation_items WHERE run_id = 3 AND exception_state IS NOT NULL "
            "ORDER BY line_no": "ix_reconciliation_items_run_id_exceptions",
            # queries.open_counts
            "SELECT run_id, count(*) FROM reconciliation_items WHERE run_id IN (2, 3) AND "
            "exception_state IN ('open', 'proposed') GROUP BY run_id": (
                "ix_reconciliation_items_run_id_exceptions"
            ),
        }
        with engine.connect() as conn:
            for query, index in queries.items():
                plan = "\n".join(conn.execute(text(f"EXPLAIN {query}")).scalars())
                assert index in plan and "Seq Scan" not in plan, plan
            totals = conn.execute(
                text(
                    "SELECT outcome, count(*) FROM reconciliation_items WHERE run_id = 3 "
                    "GROUP BY outcome ORDER BY outcome"
                )
            ).all()
        assert totals == [("amount_mismatch", 40), ("matched", 19_960)]
    finally:
        engine.dispose()
