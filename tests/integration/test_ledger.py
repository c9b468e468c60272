"""The ledger on real databases: posting, idempotency, reversal, balances, the chain."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from clearing.db import transaction
from clearing.errors import Conflict
from clearing.ledger.core import Entry, IdempotencyConflict, Posting, UnbalancedEntry
from clearing.ledger.service import LedgerService
from tests.factories import payment_entry


def post(db, entry):
    with transaction(db.sessions) as s:
        return LedgerService(s).post(entry)


def test_post_and_balances(db):
    post(db, payment_entry("p1", 20_000))
    post(db, payment_entry("p2", 5_050, treasury="510000-province"))
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.balance("gateway_clearing:alipay") == 25_050
        assert ledger.balance("treasury_payable:510100-city") == 20_000
        assert ledger.balance("treasury_payable:510000-province") == 5_050
        assert ledger.trial_balance().balanced


def test_same_key_same_content_returns_original(db):
    first = post(db, payment_entry("k"))
    again = post(db, payment_entry("k"))
    assert again.replayed and again.id == first.id
    with transaction(db.sessions) as s:
        assert LedgerService(s).balance("gateway_clearing:alipay") == 20_000


def test_same_key_other_content_names_the_difference(db):
    post(db, payment_entry("k", 100))
    with pytest.raises(IdempotencyConflict, match="postings"):
        post(db, payment_entry("k", 200))
    with pytest.raises(IdempotencyConflict, match="description"):
        post(db, payment_entry("k", 100, description="other"))


def test_reversal_once_only(db):
    original = post(db, payment_entry("p"))
    with transaction(db.sessions) as s:
        rev = LedgerService(s).reverse(
            original.id, idempotency_key="rev-p", business_date=date(2026, 11, 12)
        )
    assert rev.entry.reverses_id == original.id
    with transaction(db.sessions) as s:
        assert LedgerService(s).balance("gateway_clearing:alipay") == 0
    with pytest.raises(Conflict, match="already reversed"), transaction(db.sessions) as s:
        LedgerService(s).reverse(
            original.id, idempotency_key="rev-p-2", business_date=date(2026, 11, 12)
        )


def test_balance_as_of_business_date(db):
    post(db, payment_entry("a", 100, on=date(2026, 11, 1)))
    post(db, payment_entry("b", 200, on=date(2026, 11, 2)))
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.balance("gateway_clearing:alipay", as_of=date(2026, 11, 1)) == 100
        assert ledger.balance("gateway_clearing:alipay", as_of=date(2026, 10, 31)) == 0
        assert ledger.balance("gateway_clearing:alipay") == 300


def test_unbalanced_entry_refused_before_the_database():
    with pytest.raises(UnbalancedEntry):
        Entry(
            "x",
            date(2026, 1, 1),
            "bad",
            (Posting.debit("suspense", 100), Posting.credit("refunds_payable", 99)),
        )


def test_unknown_account_kind_refused(db):
    bad = Entry(
        "x",
        date(2026, 1, 1),
        "bad",
        (Posting.debit("petty_cash", 100), Posting.credit("suspense", 100)),
    )
    with pytest.raises(Exception, match="unknown account code"):
        post(db, bad)


# The database's own backstops, tried in raw SQL --------------------------------------------


def _raw(db, *statements):
    with db.engine.begin() as conn:
        for stmt in statements:
            conn.execute(text(stmt))


@pytest.mark.parametrize(
    "stmt",
    [
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE journal_entries SET description = 'x'",
        "DELETE FROM journal_entries",
    ],
)
def test_journal_is_append_only(db, stmt):
    post(db, payment_entry("p"))
    with pytest.raises(DBAPIError, match="append-only"):
        _raw(db, stmt)


def test_chain_is_append_only(db):
    post(db, payment_entry("p"))
    with transaction(db.sessions) as s:
        LedgerService(s).seal()
    with pytest.raises(DBAPIError, match="append-only"):
        _raw(db, "UPDATE ledger_chain SET hash = 'x'")


def test_amount_must_be_positive(db):
    post(db, payment_entry("p"))
    with pytest.raises(IntegrityError):
        _raw(
            db,
            "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
            "VALUES (1, 1, 'D', 0, 'CNY')",
        )


def test_unbalanced_entry_refused_by_postgres_at_commit(pg):
    post(pg, payment_entry("p"))
    with pytest.raises(DBAPIError, match="unbalanced"):
        _raw(
            pg,
            "INSERT INTO journal_entries (idempotency_key, business_date, created_at, "
            "description, metadata, content_hash) VALUES ('raw', '2026-11-11', now(), 'raw', "
            "'{}', 'x')",
            "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
            "SELECT id, 1, 'D', 100, 'CNY' FROM journal_entries WHERE idempotency_key='raw'",
            "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
            "SELECT id, 2, 'C', 99, 'CNY' FROM journal_entries WHERE idempotency_key='raw'",
        )


def test_single_leg_entry_refused_by_postgres(pg):
    post(pg, payment_entry("p"))
    with pytest.raises(DBAPIError, match="at least two"):
        _raw(
            pg,
            "INSERT INTO journal_entries (idempotency_key, business_date, created_at, "
            "description, metadata, content_hash) VALUES ('raw', '2026-11-11', now(), 'raw', "
            "'{}', 'x')",
        )


def test_posting_added_later_to_an_entry_refused_by_postgres(pg):
    post(pg, payment_entry("p"))
    with pytest.raises(DBAPIError, match="unbalanced"):
        _raw(
            pg,
            "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
            "VALUES (1, 1, 'D', 5, 'CNY')",
        )


def test_unbalanced_entry_refused_by_sqlite_when_sealed(sqlite):
    post(sqlite, payment_entry("p"))
    _raw(
        sqlite,
        "INSERT INTO postings (entry_id, account_id, direction, amount, currency) "
        "VALUES (1, 1, 'D', 5, 'CNY')",
    )
    with pytest.raises(DBAPIError, match="unbalanced"), transaction(sqlite.sessions) as s:
        LedgerService(s).seal()


# The hash chain ----------------------------------------------------------------------------


def test_seal_and_verify(db):
    for i in range(5):
        post(db, payment_entry(f"p{i}", 100 + i))
    with transaction(db.sessions) as s:
        assert LedgerService(s).seal() == 5
        assert LedgerService(s).seal() == 0
    post(db, payment_entry("late", 7))
    with transaction(db.sessions) as s:
        report = LedgerService(s).verify()
    assert report.ok and report.sealed == 5 and report.unsealed == 1


def test_verify_names_a_tampered_entry(db):
    for i in range(3):
        post(db, payment_entry(f"p{i}", 100))
    with transaction(db.sessions) as s:
        LedgerService(s).seal()
    _tamper(db, "UPDATE postings SET amount = 999 WHERE entry_id = 2")
    with transaction(db.sessions) as s:
        report = LedgerService(s).verify()
    assert not report.ok
    assert report.failures[0][0] == 2


def _tamper(db, stmt):
    """Bypass the append-only triggers the way an attacker with superuser rights would."""
    with db.engine.begin() as conn:
        if db.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(stmt))
        else:
            conn.execute(text("DROP TRIGGER postings_no_update"))
            conn.execute(text(stmt))


# regressions found in review -----------------------------------------------------------------


def test_retry_with_tuple_metadata_replays(db):
    entry = payment_entry("meta", metadata={"items": (1, 2)})
    first = post(db, entry)
    assert post(db, payment_entry("meta", metadata={"items": (1, 2)})).id == first.id


def test_metadata_with_non_string_keys_is_a_clear_error():
    from clearing.errors import ValidationError

    with pytest.raises(ValidationError, match="metadata"):
        payment_entry("bad", metadata={1: "a", "b": 2})


def test_accounts_open_in_the_posting_currency(db):
    usd = Entry(
        "usd",
        date(2026, 11, 11),
        "usd",
        (Posting.debit("suspense", 100, "USD"), Posting.credit("refunds_payable", 100, "USD")),
    )
    post(db, usd)
    with transaction(db.sessions) as s:
        rows = {b.code: b.currency for b in LedgerService(s).balances()}
    assert rows == {"suspense": "USD", "refunds_payable": "USD"}


def test_verify_counts_right_after_a_missing_link(db):
    for i in range(6):
        post(db, payment_entry(f"p{i}", 100))
    with transaction(db.sessions) as s:
        LedgerService(s).seal()
    with db.engine.begin() as conn:
        if db.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER ledger_chain_no_delete"))
        conn.execute(text("DELETE FROM ledger_chain WHERE seq = 2"))
    with transaction(db.sessions) as s:
        report = LedgerService(s).verify(page=2)
    assert report.sealed == 5 and report.unsealed == 1
    assert [f[0] for f in report.failures] == [3]
