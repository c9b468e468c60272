"""The ledger on real databases: posting, idempotency, reversal, balances, the chain."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from clearing.db import transaction
from clearing.errors import Conflict
from clearing.ledger.core import Entry, IdempotencyConflict, Posting, UnbalancedEntry
from clearing.ledger.service import LedgerService
from tests.conftest import unavailable
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


def test_entry_of_more_postings_than_the_database_can_number_refused():
    from clearing.errors import ValidationError
    from clearing.ledger.core import MAX_LEGS

    debits = (Posting.debit("suspense", 1),) * MAX_LEGS
    with pytest.raises(ValidationError, match=f"at most {MAX_LEGS} postings"):
        Entry("x", date(2026, 1, 1), "long", (*debits, Posting.credit("suspense", MAX_LEGS)))


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
    with pytest.raises(IntegrityError, match="amount_positive"):
        _raw(db, _entry_sql("raw", 2), _posting_sql("raw", 1, 2, "D", 0))


# An entry states its number of postings (``legs``); each posting its place (``leg``, 1..legs) --


def _entry_sql(key: str, legs: int) -> str:
    return (
        "INSERT INTO journal_entries (idempotency_key, business_date, created_at, description, "
        f"metadata, content_hash, legs) VALUES ('{key}', '2026-11-11', CURRENT_TIMESTAMP, 'raw', "
        f"'{{}}', 'x', {legs})"
    )


def _posting_sql(
    key: str,
    leg: int,
    entry_legs: int,
    direction: str,
    amount: int,
    currency: str = "CNY",
    account: int = 1,
) -> str:
    """A posting of the entry with idempotency key ``key`` (accounts 1 and 2 exist once
    ``payment_entry("p")`` is posted)."""
    return (
        "INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, amount, "
        f"currency) SELECT id, {leg}, {entry_legs}, {account}, '{direction}', {amount}, "
        f"'{currency}' FROM journal_entries WHERE idempotency_key = '{key}'"
    )


def _legs(db, entry_id):
    with db.engine.connect() as conn:
        legs = conn.execute(
            text("SELECT legs FROM journal_entries WHERE id = :id"), {"id": entry_id}
        ).scalar_one()
        rows = conn.execute(
            text(
                "SELECT p.leg, p.entry_legs, a.code, p.direction, p.amount FROM postings p "
                "JOIN ledger_accounts a ON a.id = p.account_id WHERE p.entry_id = :id "
                "ORDER BY p.leg"
            ),
            {"id": entry_id},
        ).all()
    return legs, [tuple(r) for r in rows]


def _three_legs(key: str) -> Entry:
    """Three legs, as a capture split between two payees has."""
    return Entry(
        key,
        date(2026, 11, 11),
        "three legs",
        (
            Posting.debit("gateway_clearing:alipay", 1_000),
            Posting.credit("treasury_payable:510100-city", 994),
            Posting.credit("gateway_fees:alipay", 6),
        ),
    )


def test_entry_stores_its_legs_in_order(db):
    posted = post(db, _three_legs("three"))
    assert _legs(db, posted.id) == (
        3,
        [
            (1, 3, "gateway_clearing:alipay", "D", 1_000),
            (2, 3, "treasury_payable:510100-city", "C", 994),
            (3, 3, "gateway_fees:alipay", "C", 6),
        ],
    )
    with transaction(db.sessions) as s:
        row = LedgerService(s).repo.entry(posted.id)
        assert [p.account.code for p in row.postings] == [
            p.account for p in _three_legs("three").postings
        ]


def test_entry_of_fewer_than_two_legs_refused(db):
    post(db, payment_entry("p"))
    with pytest.raises(IntegrityError, match="legs_at_least_two"):
        _raw(db, _entry_sql("raw", 1), _posting_sql("raw", 1, 1, "D", 100))


@pytest.mark.parametrize(
    ("leg", "entry_legs"),
    [
        (3, 2),  # a fresh place beyond the entry's legs: the CHECK
        (3, 3),  # ... claiming the entry has three: the foreign key (entry_id, entry_legs)
        (2, 2),  # a place already taken: the unique (entry_id, leg)
        (0, 2),  # no place at all
    ],
)
def test_posting_added_later_to_an_entry_refused(db, leg, entry_legs):
    post(db, payment_entry("p"))
    with pytest.raises(IntegrityError):
        _raw(db, _posting_sql("p", leg, entry_legs, "D", 5))
    assert _legs(db, 1)[0] == 2 and len(_legs(db, 1)[1]) == 2


def test_posting_racing_an_open_entry_for_its_place_refused(pg):
    """No window while the entry's transaction is open: a posting for a place its own postings
    hold waits on their unique key, and is refused once they commit."""
    post(pg, payment_entry("p"))
    with pg.engine.connect() as first:
        first.execute(text(_entry_sql("raw", 2)))
        first.execute(text(_posting_sql("raw", 1, 2, "D", 100)))
        first.execute(text(_posting_sql("raw", 2, 2, "C", 100, account=2)))
        entry_id = first.execute(
            text("SELECT id FROM journal_entries WHERE idempotency_key = 'raw'")
        ).scalar_one()
        with ThreadPoolExecutor(1) as pool:
            racer = pool.submit(_insert_posting, pg, entry_id, 2, 2)
            time.sleep(0.3)  # the racer now waits on the first transaction's (entry_id, leg)
            first.commit()
            with pytest.raises(IntegrityError, match="uq_postings_entry_id_leg"):
                racer.result(timeout=30)
    assert _legs(pg, entry_id)[0] == 2 and len(_legs(pg, entry_id)[1]) == 2


def test_posting_for_a_free_place_of_an_open_entry_refused(pg):
    """Another transaction cannot reference an entry that has not committed: its foreign key
    does not see the row (and does not wait for it)."""
    post(pg, payment_entry("p"))
    with pg.engine.connect() as first:
        first.execute(text(_entry_sql("raw", 2)))
        first.execute(text(_posting_sql("raw", 1, 2, "D", 100)))
        entry_id = first.execute(
            text("SELECT id FROM journal_entries WHERE idempotency_key = 'raw'")
        ).scalar_one()
        with pytest.raises(IntegrityError, match="fk_postings_entry_id_journal_entries"):
            _insert_posting(pg, entry_id, 2, 2)
        first.execute(text(_posting_sql("raw", 2, 2, "C", 100, account=2)))
        first.commit()
    assert _legs(pg, entry_id)[0] == 2 and len(_legs(pg, entry_id)[1]) == 2


def _insert_posting(db, entry_id: int, leg: int, entry_legs: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '20s'"))
        conn.execute(
            text(
                "INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, "
                f"amount, currency) VALUES ({entry_id}, {leg}, {entry_legs}, 1, 'D', 5, 'CNY')"
            )
        )


def test_unbalanced_entry_refused_by_postgres_at_commit(pg):
    post(pg, payment_entry("p"))
    with pytest.raises(DBAPIError, match="unbalanced in CNY: debits - credits = 1"):
        _raw(
            pg,
            _entry_sql("raw", 2),
            _posting_sql("raw", 1, 2, "D", 100),
            _posting_sql("raw", 2, 2, "C", 99, account=2),
        )


@pytest.mark.parametrize("postings", [0, 1, 2])
def test_entry_with_fewer_postings_than_its_legs_refused_by_postgres(pg, postings):
    post(pg, payment_entry("p"))
    legs = [
        _posting_sql("raw", 1, 3, "D", 100),
        _posting_sql("raw", 2, 3, "C", 100, account=2),
    ][:postings]
    with pytest.raises(DBAPIError, match=f"has {postings} posting\\(s\\); it states 3 legs"):
        _raw(pg, _entry_sql("raw", 3), *legs)


def test_multi_currency_entry_balanced_per_currency_accepted(db):
    posted = post(db, _fx("fx"))
    assert _legs(db, posted.id)[0] == 4
    with transaction(db.sessions) as s:
        assert LedgerService(s).seal() == 1
        assert LedgerService(s).verify().ok


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        # debits equal credits over all currencies, not within each
        ([("D", 100, "CNY"), ("C", 100, "USD")], "unbalanced in CNY: debits - credits = 100"),
        (
            [("D", 100, "CNY"), ("C", 100, "CNY"), ("D", 7, "USD"), ("C", 6, "USD")],
            "unbalanced in USD: debits - credits = 1",
        ),
    ],
)
def test_multi_currency_entry_unbalanced_in_one_currency_refused_by_postgres(pg, legs, message):
    post(pg, payment_entry("p"))
    n = len(legs)
    with pytest.raises(DBAPIError, match=message):
        _raw(
            pg,
            _entry_sql("raw", n),
            *(_posting_sql("raw", i, n, d, a, c) for i, (d, a, c) in enumerate(legs, 1)),
        )


def test_balance_check_runs_once_per_entry(pg):
    """One execution of the deferred check per entry, whatever its legs (it used to run once
    per row: 1 + legs times). Counted by PostgreSQL itself, in this transaction."""
    entries = [_three_legs("three"), payment_entry("two"), _five_legs("five")]
    with transaction(pg.sessions) as s:
        s.execute(text("SET LOCAL track_functions = 'pl'"))
        before = _function_calls(s)  # the backend's unflushed counts may include earlier ones
        ledger = LedgerService(s)
        for entry in entries:
            ledger.post(entry)
        s.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the deferred checks run here
        after = _function_calls(s)
    calls = {f: n - before.get(f, 0) for f, n in after.items() if n != before.get(f, 0)}
    assert calls == {"ledger_check_balanced": len(entries)}


def _function_calls(session) -> dict[str, int]:
    rows = session.execute(text("SELECT funcname, calls FROM pg_stat_xact_user_functions"))
    return {name: calls for name, calls in rows}


def _fx(key: str) -> Entry:
    return Entry(
        key,
        date(2026, 11, 11),
        "two currencies",
        (
            Posting.debit("suspense", 100, "USD"),
            Posting.credit("refunds_payable", 100, "USD"),
            Posting.debit("gateway_clearing:alipay", 700),
            Posting.credit("treasury_payable:510100-city", 700),
        ),
    )


@pytest.mark.parametrize(("entry", "queries"), [(_three_legs("one"), 1), (_fx("fx"), 2)])
def test_balance_check_is_one_query_for_one_currency(pg, entry, queries):
    """The queries the deferred check runs, as auto_explain reports them (nested statements)."""
    with transaction(pg.sessions) as s:
        try:
            s.execute(text("LOAD 'auto_explain'"))
        except DBAPIError as exc:
            unavailable("PostgreSQL's auto_explain module", exc)  # fails under CI=true
        for setting in ("log_min_duration = 0", "log_nested_statements = on"):
            s.execute(text(f"SET LOCAL auto_explain.{setting}"))
        s.execute(text("SET LOCAL auto_explain.log_level = 'notice'"))
        LedgerService(s).post(entry)
        plans: list[str] = []

        def collect(diag) -> None:  # type: ignore[no-untyped-def]
            plans.append(diag.message_primary or "")

        driver = s.connection().connection.driver_connection
        driver.add_notice_handler(collect)
        try:
            s.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the deferred check runs here
        finally:
            driver.remove_notice_handler(collect)
    statements = [p for p in plans if "Query Text:" in p]
    assert len(statements) == queries
    assert "count(*), min(currency), max(currency)" in statements[0]


def _five_legs(key: str) -> Entry:
    return Entry(
        key,
        date(2026, 11, 11),
        "five legs",
        (
            Posting.debit("gateway_clearing:alipay", 1_000),
            *(Posting.credit(f"treasury_payable:51010{i}-city", 250) for i in range(4)),
        ),
    )


def test_only_the_entry_table_has_a_balance_trigger(pg):
    with pg.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT tgrelid::regclass::text, tgname, tgdeferrable, tginitdeferred "
                "FROM pg_trigger WHERE tgfoid = 'ledger_check_balanced'::regproc"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("journal_entries", "journal_entries_balanced", True, True)]


def test_unbalanced_entry_refused_by_sqlite_when_sealed(sqlite):
    post(sqlite, payment_entry("p"))
    _raw(
        sqlite,
        _entry_sql("raw", 2),
        _posting_sql("raw", 1, 2, "D", 100),
        _posting_sql("raw", 2, 2, "C", 99, account=2),
    )
    with pytest.raises(DBAPIError, match="unbalanced"), transaction(sqlite.sessions) as s:
        LedgerService(s).seal()


def test_entry_missing_postings_refused_by_sqlite_when_sealed(sqlite):
    post(sqlite, payment_entry("p"))
    _raw(
        sqlite,
        _entry_sql("raw", 3),
        _posting_sql("raw", 1, 3, "D", 100),
        _posting_sql("raw", 2, 3, "C", 100, account=2),
    )
    with pytest.raises(DBAPIError, match="legs"), transaction(sqlite.sessions) as s:
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
