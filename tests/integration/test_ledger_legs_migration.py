"""Migrations 0010 (expand: the NULLable columns) and 0011 (contract: an entry states its legs;
the balance is checked once per entry) on a ledger that already has entries, on SQLite and
PostgreSQL, the way a rolling deploy runs them: 0010 while the previous release serves (rows in
the old shape) and the current code serves (rows with legs), then 0011: the backfill of the
former, the latter kept, the old entries closed to new postings, the append-only triggers kept,
the readiness check along the way, and downgrades back to exactly 0010's and 0009's schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from alembic import command
from api.routers import health
from clearing import migrate
from clearing.db import make_engine, make_sessionmaker, transaction
from clearing.ledger.repository import clear_account_cache
from clearing.ledger.service import LedgerService
from tests.conftest import PG_URL, unavailable
from tests.factories import payment_entry
from tests.support.databases import empty_database

pytestmark = pytest.mark.slow

_NOW = "CURRENT_TIMESTAMP"
# 0009's tables. Entries 1 (2 legs) and 2 (3 legs) have their postings interleaved by id; 3 has
# two currencies; 4 reverses 1 (a self-reference); 1 and 2 are sealed (links reference them).
SEED = (
    "INSERT INTO ledger_accounts (id, code, type, currency, name, created_at) VALUES "
    f"(1, 'gateway_clearing:alipay', 'asset', 'CNY', 'a', {_NOW}), "
    f"(2, 'treasury_payable:510100-city', 'liability', 'CNY', 'b', {_NOW}), "
    f"(3, 'gateway_fees:alipay', 'expense', 'CNY', 'c', {_NOW}), "
    f"(4, 'suspense', 'liability', 'USD', 'd', {_NOW}), "
    f"(5, 'refunds_payable', 'liability', 'USD', 'e', {_NOW})",
    "INSERT INTO journal_entries (id, idempotency_key, business_date, created_at, description, "
    "metadata, reverses_id, content_hash) VALUES "
    f"(1, 'one', '2026-11-11', {_NOW}, 'one', '{{}}', NULL, 'h'), "
    f"(2, 'two', '2026-11-11', {_NOW}, 'two', '{{}}', NULL, 'h'), "
    f"(3, 'fx', '2026-11-11', {_NOW}, 'fx', '{{\"k\": [1, 2]}}', NULL, 'h'), "
    f"(4, 'rev-one', '2026-11-12', {_NOW}, 'rev', '{{}}', 1, 'h')",
    "INSERT INTO postings (id, entry_id, account_id, direction, amount, currency) VALUES "
    "(1, 2, 1, 'D', 1000, 'CNY'), (2, 1, 1, 'D', 500, 'CNY'), (3, 2, 2, 'C', 994, 'CNY'), "
    "(4, 1, 2, 'C', 500, 'CNY'), (5, 2, 3, 'C', 6, 'CNY'), "
    "(6, 3, 4, 'D', 100, 'USD'), (7, 3, 5, 'C', 100, 'USD'), (8, 3, 1, 'D', 7, 'CNY'), "
    "(9, 3, 2, 'C', 7, 'CNY'), (10, 4, 2, 'D', 500, 'CNY'), (11, 4, 1, 'C', 500, 'CNY')",
    "INSERT INTO ledger_chain (seq, entry_id, prev_hash, hash, sealed_at) VALUES "
    f"(1, 1, 'g', 'h1', {_NOW}), (2, 2, 'h1', 'h2', {_NOW})",
)
PG_SEQUENCES = (
    "SELECT setval(pg_get_serial_sequence('ledger_accounts', 'id'), 5)",
    "SELECT setval(pg_get_serial_sequence('journal_entries', 'id'), 4)",
    "SELECT setval(pg_get_serial_sequence('postings', 'id'), 11)",
)
LEGS = {1: 2, 2: 3, 3: 4, 4: 2}
# posting id -> (leg, entry_legs): the order of ids within each entry
PLACES = {
    1: (1, 3),
    2: (1, 2),
    3: (2, 3),
    4: (2, 2),
    5: (3, 3),
    6: (1, 4),
    7: (2, 4),
    8: (3, 4),
    9: (4, 4),
    10: (1, 2),
    11: (2, 2),
}
LEDGER_TABLES = ("journal_entries", "postings", "ledger_chain")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, empty (no tables): this test migrates it up and down."""
    with empty_database(request.param, PG_URL, tmp_path, "legs", unavailable=unavailable) as url:
        yield url


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        for stmt in SEED:
            conn.execute(text(stmt))
        if engine.dialect.name == "postgresql":
            for stmt in PG_SEQUENCES:
                conn.execute(text(stmt))


def _legs(engine: Engine) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    with engine.connect() as conn:
        legs = dict(conn.execute(text("SELECT id, legs FROM journal_entries WHERE id <= 4")).all())
        places = {
            r.id: (r.leg, r.entry_legs)
            for r in conn.execute(text("SELECT id, leg, entry_legs FROM postings WHERE id <= 11"))
        }
    return legs, places


def _schema(engine: Engine) -> dict:
    """The ledger tables as the database describes them: columns, keys, indexes, checks,
    triggers (and on PostgreSQL the balance function's source)."""
    insp = inspect(engine)
    out: dict = {}
    for table in LEDGER_TABLES:
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(insp.get_foreign_keys(table), key=lambda fk: fk["name"] or ""),
            "indexes": sorted(insp.get_indexes(table), key=lambda ix: ix["name"] or ""),
            "uniques": sorted(insp.get_unique_constraints(table), key=lambda u: u["name"] or ""),
            "checks": sorted(insp.get_check_constraints(table), key=lambda c: c["name"] or ""),
        }
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            out["triggers"] = sorted(
                conn.execute(
                    text("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal")
                ).scalars()
            )
            out["function"] = conn.execute(
                text("SELECT prosrc FROM pg_proc WHERE proname = 'ledger_check_balanced'")
            ).scalar_one()
        else:
            out["triggers"] = sorted(
                tuple(r)
                for r in conn.execute(
                    text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
                )
            )
    return out


# The previous release at 0010: an entry and its postings without the new columns (its
# PG_ENTRY_CTES, or the SQLite path, in raw SQL). Entry 5 (sequences), postings 12 and 13.
OLD_SHAPE = (
    "INSERT INTO journal_entries (idempotency_key, business_date, created_at, description, "
    f"metadata, content_hash) VALUES ('old-shape', '2026-11-13', {_NOW}, 'old', '{{}}', 'h')",
    "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
    "SELECT e.id, a.account_id, a.direction, 250, 'CNY' FROM journal_entries e, "
    "(SELECT 1 AS account_id, 'D' AS direction UNION ALL SELECT 2, 'C') AS a "
    "WHERE e.idempotency_key = 'old-shape' ORDER BY a.account_id",
)
# The current code's shape at 0010, places not in the order of ids: 0011 must keep them.
NEW_SHAPE = (
    "INSERT INTO journal_entries (idempotency_key, business_date, created_at, description, "
    f"metadata, content_hash, legs) VALUES ('new-shape', '2026-11-13', {_NOW}, 'new', '{{}}', "
    "'h', 2)",
    "INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, amount, currency) "
    "SELECT e.id, a.leg, 2, a.account_id, a.direction, 40, 'CNY' FROM journal_entries e, "
    "(SELECT 2 AS leg, 1 AS account_id, 'D' AS direction UNION ALL SELECT 1, 2, 'C') AS a "
    "WHERE e.idempotency_key = 'new-shape' ORDER BY a.leg DESC",
)


def _places_of(engine: Engine, key: str) -> tuple[int | None, list[tuple]]:
    """(legs, [(posting id, leg, entry_legs) in order of id]) of the entry ``key``."""
    with engine.connect() as conn:
        legs = conn.execute(
            text("SELECT legs FROM journal_entries WHERE idempotency_key = :k"), {"k": key}
        ).scalar_one()
        rows = conn.execute(
            text(
                "SELECT p.id, p.leg, p.entry_legs FROM postings p JOIN journal_entries e "
                "ON e.id = p.entry_id WHERE e.idempotency_key = :k ORDER BY p.id"
            ),
            {"k": key},
        ).all()
    return legs, [tuple(r) for r in rows]


def _read_postings(engine: Engine, entry_id: int) -> list[int]:
    """The ids of the entry's postings as the code reads them (``JournalEntry.postings``)."""
    with transaction(make_sessionmaker(engine)) as s:
        return [p.id for p in LedgerService(s).repo.entry(entry_id).postings]


def test_rolling_deploy_expand_then_contract(url):
    migrate.upgrade(url, "0009")
    engine = make_engine(url)
    try:
        before = _schema(engine)
        _seed(engine)
        assert health.check_migrations(engine).startswith("database at ['0009']")

        migrate.upgrade(url, migrate.OLDEST_SCHEMA)  # the expand: columns only, NULLable
        expanded = _schema(engine)
        assert health.check_migrations(engine) == "ok"
        assert _legs(engine) == ({i: None for i in LEGS}, {i: (None, None) for i in PLACES})
        with engine.begin() as conn:  # the previous release writes, unaware of the columns
            for stmt in OLD_SHAPE:
                conn.execute(text(stmt))
        if engine.dialect.name == "postgresql":  # 0001's triggers still check its entries
            with pytest.raises(IntegrityError, match="at least two"), engine.begin() as conn:
                conn.execute(text(OLD_SHAPE[0].replace("old-shape", "old-unbalanced")))
                conn.execute(
                    text(
                        "INSERT INTO postings (entry_id, account_id, direction, amount, "
                        "currency) SELECT id, 1, 'D', 5, 'CNY' FROM journal_entries "
                        "WHERE idempotency_key = 'old-unbalanced'"
                    )
                )
        clear_account_cache()
        with transaction(make_sessionmaker(engine)) as s:  # the current code writes legs
            at_0010 = LedgerService(s).post(payment_entry("at-0010", 200))
        with engine.begin() as conn:
            for stmt in NEW_SHAPE:
                conn.execute(text(stmt))
        old_legs, old_places = _places_of(engine, "old-shape")
        assert (old_legs, [r[1:] for r in old_places]) == (None, [(None, None)] * 2)
        assert _places_of(engine, "at-0010")[0] == 2
        assert [r[1:] for r in _places_of(engine, "at-0010")[1]] == [(1, 2), (2, 2)]
        new_ids = [r[0] for r in _places_of(engine, "new-shape")[1]]
        assert _read_postings(engine, 2) == [1, 3, 5]  # NULL legs: in order of id
        assert _read_postings(engine, _entry_id(engine, "old-shape")) == [r[0] for r in old_places]
        new_entry = _entry_id(engine, "new-shape")
        assert _read_postings(engine, new_entry) == new_ids[::-1]  # in order of leg

        migrate.upgrade(url)  # the contract, once the previous release is gone
        assert health.check_migrations(engine) == "ok"
        assert _legs(engine) == (LEGS, PLACES)
        assert _places_of(engine, "old-shape") == (
            2,
            [(old_places[0][0], 1, 2), (old_places[1][0], 2, 2)],
        )
        assert [r[1:] for r in _places_of(engine, "at-0010")[1]] == [(1, 2), (2, 2)]
        assert _places_of(engine, "new-shape") == (2, [(new_ids[0], 2, 2), (new_ids[1], 1, 2)])
        assert _read_postings(engine, new_entry) == new_ids[::-1]
        _old_entries_are_closed(engine)
        _ledger_works(engine, unsealed=6)  # 3, 4, old-shape, at-0010, new-shape, the new one
        assert at_0010.id

        command.downgrade(migrate.alembic_config(url), migrate.OLDEST_SCHEMA)
        assert _schema(engine) == expanded
        assert health.check_migrations(engine) == "ok"
        with engine.begin() as conn:  # the previous release again, after a rollback
            for stmt in OLD_SHAPE:
                conn.execute(text(stmt.replace("old-shape", "old-again")))
        command.downgrade(migrate.alembic_config(url), "0009")
        assert _schema(engine) == before
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM postings")).scalar() == 11 + 10

        migrate.upgrade(url)  # and up again, over the entries posted in between
        assert _legs(engine) == (LEGS, PLACES)
        assert _places_of(engine, "old-again")[0] == 2
        with engine.begin() as conn:  # a newer release's expand: ahead of this code, ready
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
        assert health.check_migrations(engine) == "ok"
    finally:
        engine.dispose()


def _entry_id(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id FROM journal_entries WHERE idempotency_key = :k"), {"k": key}
        ).scalar_one()


def test_contract_refuses_an_entry_whose_legs_are_not_its_postings(url):
    """At 0010 nothing checks a stated ``legs`` against the postings (0001's triggers count at
    least two); 0011 names such an entry and changes nothing."""
    migrate.upgrade(url, migrate.OLDEST_SCHEMA)
    engine = make_engine(url)
    try:
        _seed(engine)
        with engine.begin() as conn:
            conn.execute(text(NEW_SHAPE[0].replace(", 2)", ", 3)")))
            conn.execute(text(NEW_SHAPE[1]))
        entry = _entry_id(engine, "new-shape")
        _contract_refuses(url, engine, rf"journal entries \[{entry}\] have fewer than two")
    finally:
        engine.dispose()


def _contract_refuses(url: str, engine: Engine, match: str) -> None:
    """The contract (0011) stops with ``match`` and changes nothing: the schema and the revision
    stay 0010's."""
    before = _schema(engine)
    with pytest.raises(Exception, match=match):
        migrate.upgrade(url)
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0010"


def _old_entries_are_closed(engine: Engine) -> None:
    for leg, entry_legs in ((3, 3), (3, 2), (2, 2)):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, "
                    f"amount, currency) VALUES (1, {leg}, {entry_legs}, 1, 'D', 5, 'CNY')"
                )
            )
    for stmt in ("UPDATE postings SET amount = 1", "DELETE FROM journal_entries WHERE id = 4"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))


def _ledger_works(engine: Engine, unsealed: int) -> None:
    clear_account_cache()
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        posted = LedgerService(s).post(payment_entry("after", 300))
    with transaction(sessions) as s:
        assert LedgerService(s).seal() == unsealed  # every entry has its legs
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT leg, entry_legs FROM postings WHERE entry_id = :id ORDER BY leg"),
            {"id": posted.id},
        ).all()
    assert [tuple(r) for r in rows] == [(1, 2), (2, 2)]


def test_sqlite_upgrade_refuses_an_entry_without_two_postings(tmp_path):
    """SQLite has no commit-time check: such an entry can exist there (unsealed). The expand
    (0010) does not look; the contract (0011) names it and changes nothing."""
    url = f"sqlite:///{tmp_path / 'short.db'}"
    migrate.upgrade(url, "0009")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in SEED:
                conn.execute(text(stmt))
            conn.execute(
                text(
                    "INSERT INTO journal_entries (id, idempotency_key, business_date, "
                    "created_at, description, metadata, content_hash) VALUES (5, 'lone', "
                    f"'2026-11-11', {_NOW}, 'lone', '{{}}', 'h')"
                )
            )
            conn.execute(text("INSERT INTO postings VALUES (12, 5, 1, 'D', 1, 'CNY')"))
        migrate.upgrade(url, migrate.OLDEST_SCHEMA)
        _contract_refuses(url, engine, r"journal entries \[5\] have fewer than two postings")
    finally:
        engine.dispose()


def test_sqlite_migration_restores_foreign_keys_on_its_connection(tmp_path):
    """0011's SQLite upgrade and downgrade switch foreign keys off to rebuild journal_entries (a
    parent table); the connection they ran on has them on again afterwards."""
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            cfg = migrate.alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            command.downgrade(cfg, "0010")
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            command.downgrade(cfg, "0009")
            conn.rollback()
    finally:
        engine.dispose()
