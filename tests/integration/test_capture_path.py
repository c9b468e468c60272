"""The lean capture path on real databases: what it writes, in how many statements, the receipt
number drawn again on a collision, the webhook read with the notice, and concurrent notifies of
two attempts of one notice on PostgreSQL. The optimistic capture's guard (a row changed between
its read and its write) is tested in test_optimistic_capture.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from clearing.config import Settings
from clearing.db import pg_execute, transaction
from clearing.ledger.models import Account, JournalEntry
from clearing.ledger.repository import LedgerRepository
from clearing.ledger.service import LedgerService
from clearing.payments import repository
from clearing.payments.capture import _capture_entry, capture
from clearing.payments.models import GatewayNotification, PaymentAttempt, Refund
from clearing.payments.service import PaymentContext
from clearing.routing import DEFAULT_RULES, Router
from gateways.protocol import Channel, GatewayStatus, PaymentResult
from notices import events, receipts
from notices.event_models import DepartmentEvent
from notices.models import Notice
from notices.receipt_models import Receipt
from notices.receipts import ESeal, PublishedKeys, issue_receipt, verify_receipt
from tests.factories import payable_notice, started_order
from tests.receipt_factories import NOW, paid_notice
from tests.support.fake_gateway import FakeGateway

PAID_AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
ESEAL = ESeal(Ed25519PrivateKey.generate())
KEYS = PublishedKeys({ESEAL.key_id: ESEAL.public_key})
DEPARTMENT = "成都市公安局交通管理局"


@pytest.fixture
def gateways():
    return {"alipay": FakeGateway("alipay"), "unionpay": FakeGateway("unionpay", Channel.BANK)}


@pytest.fixture
def ctx(gateways, tmp_path):
    return PaymentContext(gateways, Router(DEFAULT_RULES), "https://pay.example.gov.cn", ESEAL)


def _notice(db, tmp_path, department: str = DEPARTMENT) -> tuple[int, str]:
    return payable_notice(db, tmp_path, department)


def _start(db, ctx, code: str, channel: str = "wallet") -> str:
    return started_order(db, ctx, code, channel, PAID_AT)


def _apply(db, result: PaymentResult):
    return capture(db.sessions, result, source="notify", eseal=ESEAL)


def _count(db, model) -> int:
    with transaction(db.sessions) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_capture_is_two_statements_on_postgresql_no_transaction_and_no_flush(
    db, ctx, gateways, tmp_path
) -> None:
    _, warm_up = _notice(db, tmp_path, "成都市公安局交通管理局 一")  # opens the ledger accounts
    _apply(db, gateways["alipay"].pay(_start(db, ctx, warm_up), PAID_AT))
    with transaction(db.sessions) as s:  # committed accounts are cached from their next look-up
        LedgerRepository(s).accounts(s.scalars(select(Account.code)).all())
    _, code = _notice(db, tmp_path)
    result = gateways["alipay"].pay(_start(db, ctx, code), PAID_AT)
    statements: list[tuple[str, bool]] = []
    transactions: list[str] = []
    flushes: list[int] = []

    def on_statement(_conn, cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            autocommit = getattr(cursor.connection, "autocommit", False)
            statements.append((statement.split()[0], autocommit))

    def on_flush(*_args) -> None:  # type: ignore[no-untyped-def]
        flushes.append(1)

    listeners = [
        (db.engine, "before_cursor_execute", on_statement),
        (db.engine, "begin", lambda *_a: transactions.append("begin")),
        (db.engine, "commit", lambda *_a: transactions.append("commit")),
        (Session, "before_flush", on_flush),
    ]
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        assert _apply(db, result).outcome == "captured"
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)
    if db.engine.dialect.name == "postgresql":
        # The attempt and its notice read (no lock), then every write in one statement
        # (clearing.payments.settle_pg): guard, entry, postings, attempt, notice, receipt, event,
        # notification. Both in the driver's autocommit: no BEGIN, no COMMIT is sent.
        assert statements == [("SELECT", True), ("WITH", True)]
        assert transactions == []
    else:  # SQLite has no data-modifying CTE: the same writes, one statement each
        assert [name for name, _ in statements] == (
            ["SELECT", "SELECT"] + ["INSERT"] * 2 + ["UPDATE"] * 2 + ["INSERT"] * 3
        )
        assert transactions == ["begin", "commit"]
    assert flushes == []


def test_a_capture_writes_attempt_notice_receipt_event_and_notification(
    db, ctx, gateways, tmp_path
) -> None:
    notice_id, code = _notice(db, tmp_path)
    order_id = _start(db, ctx, code)
    outcome = _apply(db, gateways["alipay"].pay(order_id, PAID_AT))
    with transaction(db.sessions) as s:
        attempt = s.scalars(select(PaymentAttempt)).one()
        receipt = s.scalars(select(Receipt)).one()
        paid_event = s.scalars(select(DepartmentEvent)).one()
        logged = s.scalars(select(GatewayNotification)).one()
        assert s.get(Notice, notice_id).status == "paid"
    assert (attempt.state, attempt.settles_notice_id) == ("succeeded", notice_id)
    assert attempt.journal_entry_id == outcome.journal_entry_id
    assert attempt.gateway_txn_id == f"T{order_id}"
    assert receipt.attempt_id == attempt.id and verify_receipt(receipt, KEYS).ok
    assert receipt.payload["payment"]["order_id"] == order_id
    assert receipt.payload["paid_at"] == "2026-11-27T10:00:00+08:00"
    assert paid_event.payload["receipt_number"] == receipt.number
    assert paid_event.payload["paid_at"] == PAID_AT.isoformat()
    assert paid_event.state == "no_webhook" and paid_event.next_attempt_at is None
    assert (logged.outcome, logged.detail) == ("captured", "notify: succeeded")


def test_the_paid_event_is_pending_when_the_department_has_a_webhook(
    db, ctx, gateways, tmp_path
) -> None:
    _, code = _notice(db, tmp_path)
    settings = Settings(var_dir=tmp_path, env="test")
    with transaction(db.sessions) as s:
        events.set_webhook(s, DEPARTMENT, "https://hooks.example.cn/x", settings=settings)
    _apply(db, gateways["alipay"].pay(_start(db, ctx, code), PAID_AT))
    with transaction(db.sessions) as s:
        paid_event = s.scalars(select(DepartmentEvent)).one()
    assert paid_event.state == "pending" and paid_event.next_attempt_at is not None


def test_a_disabled_webhook_is_not_subscribed(db, ctx, gateways, tmp_path) -> None:
    _, code = _notice(db, tmp_path)
    settings = Settings(var_dir=tmp_path, env="test")
    with transaction(db.sessions) as s:
        events.set_webhook(s, DEPARTMENT, "https://hooks.example.cn/x", settings=settings)
        events.disable_webhook(s, DEPARTMENT)
    _apply(db, gateways["alipay"].pay(_start(db, ctx, code), PAID_AT))
    with transaction(db.sessions) as s:
        assert s.scalars(select(DepartmentEvent.state)).one() == "no_webhook"


def test_a_receipt_number_in_use_is_drawn_again(db, monkeypatch) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, suffix="1")
        taken = issue_receipt(session, notice, attempt, ESEAL, NOW).number
    fresh = "FS202611280000000042"
    draws = iter([taken, taken, fresh])
    monkeypatch.setattr(receipts, "new_number", lambda _now: next(draws))
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, suffix="2")
        receipt = issue_receipt(session, notice, attempt, ESEAL, NOW)
    assert receipt.number == fresh and receipt.payload["number"] == fresh
    assert verify_receipt(receipt, KEYS).ok
    assert _count(db, Receipt) == 2


def test_a_receipt_number_that_is_always_in_use_gives_up(db, monkeypatch) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, suffix="1")
        taken = issue_receipt(session, notice, attempt, ESEAL, NOW).number
    monkeypatch.setattr(receipts, "new_number", lambda _now: taken)
    failing = pytest.raises(RuntimeError, match="unused receipt number")
    with failing, db.session() as session, session.begin():
        notice, attempt = paid_notice(session, suffix="2")
        issue_receipt(session, notice, attempt, ESEAL, NOW)
    assert _count(db, Receipt) == 1


def test_a_capture_whose_receipt_number_is_in_use_draws_another(
    db, ctx, gateways, tmp_path, monkeypatch
) -> None:
    """On PostgreSQL the one write statement then fails and is rolled back whole (it is its own
    transaction), and the ordinary path captures, drawing another number: nothing is lost,
    nothing is doubled."""
    _, code = _notice(db, tmp_path, "成都市公安局交通管理局 一")
    _apply(db, gateways["alipay"].pay(_start(db, ctx, code), PAID_AT))
    with transaction(db.sessions) as s:
        taken = s.scalars(select(Receipt.number)).one()
    notice_id, code = _notice(db, tmp_path)
    order_id = _start(db, ctx, code)
    fresh = "FS202611270000000042"
    draws = iter([taken, fresh])
    monkeypatch.setattr(receipts, "new_number", lambda _now: next(draws))
    outcome = _apply(db, gateways["alipay"].pay(order_id, PAID_AT))
    assert outcome.outcome == "captured"
    with transaction(db.sessions) as s:
        receipt = s.scalars(select(Receipt).where(Receipt.notice_id == notice_id)).one()
        paid_event = s.scalars(
            select(DepartmentEvent).where(DepartmentEvent.notice_id == notice_id)
        ).one()
        logged = s.scalars(
            select(GatewayNotification.outcome).where(GatewayNotification.order_id == order_id)
        ).all()
        attempt = s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)).one()
    assert receipt.number == fresh and verify_receipt(receipt, KEYS).ok
    assert paid_event.payload["receipt_number"] == fresh
    assert logged == ["captured"]
    assert attempt.journal_entry_id == outcome.journal_entry_id is not None
    assert _count(db, Receipt) == 2 and _count(db, DepartmentEvent) == 2


def test_a_capture_whose_entry_is_already_posted_settles_on_the_posted_entry(
    db, ctx, gateways, tmp_path
) -> None:
    """The entry's key is the guarantee of exactly once. Should the entry exist with the
    attempt still open, the capture writes no second entry: on PostgreSQL the one write
    statement writes nothing at all, and the ordinary path replays the entry and settles."""
    notice_id, code = _notice(db, tmp_path)
    order_id = _start(db, ctx, code)
    result = gateways["alipay"].pay(order_id, PAID_AT)
    with transaction(db.sessions) as s:
        attempt = repository.lock_attempt(s, order_id)
        notice = repository.lock_notice(s, notice_id)
        posted = LedgerService(s).post(_capture_entry(attempt, notice, result, PAID_AT))
    outcome = _apply(db, result)
    assert (outcome.outcome, outcome.journal_entry_id) == ("captured", posted.id)
    with transaction(db.sessions) as s:
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == 1
        assert s.get(Notice, notice_id).status == "paid"
        attempt_row = s.scalars(select(PaymentAttempt)).one()
        logged = s.scalars(select(GatewayNotification.outcome)).all()
    assert (attempt_row.state, attempt_row.journal_entry_id) == ("succeeded", posted.id)
    assert logged == ["captured"]
    assert _count(db, Receipt) == 1 and _count(db, DepartmentEvent) == 1


def test_the_duplicate_capture_opens_its_refund(db, ctx, gateways, tmp_path) -> None:
    notice_id, code = _notice(db, tmp_path)
    first, second = _start(db, ctx, code, "wallet"), _start(db, ctx, code, "bank")
    _apply(db, gateways["alipay"].pay(first, PAID_AT))
    outcome = _apply(db, gateways["unionpay"].pay(second, PAID_AT))
    assert outcome.outcome == "duplicate"
    with transaction(db.sessions) as s:
        refund = s.get(Refund, outcome.refund_id)
        attempt = s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == second)).one()
    assert (refund.kind, refund.state, refund.notice_id) == ("duplicate", "submitted", notice_id)
    assert (attempt.state, attempt.settles_notice_id) == ("duplicate", None)
    assert attempt.journal_entry_id == outcome.journal_entry_id
    assert _count(db, Receipt) == 1 and _count(db, DepartmentEvent) == 1


def test_a_failed_notify_moves_an_open_attempt(db, ctx, tmp_path) -> None:
    _, code = _notice(db, tmp_path)
    order_id = _start(db, ctx, code)
    outcome = _apply(db, PaymentResult("alipay", order_id, GatewayStatus.FAILED))
    assert outcome.outcome == "state_changed"
    with transaction(db.sessions) as s:
        assert s.scalars(select(PaymentAttempt.state)).one() == "failed"


def test_concurrent_notifies_of_two_attempts_of_one_notice(pg, ctx, gateways, tmp_path) -> None:
    """Two tabs paid, both notifies at once, each repeated: one settles, one is a duplicate."""
    _, code = _notice(pg, tmp_path)
    first, second = _start(pg, ctx, code, "wallet"), _start(pg, ctx, code, "bank")
    results = [
        gateways["alipay"].pay(first, PAID_AT),
        gateways["unionpay"].pay(second, PAID_AT),
    ] * 10
    barrier = Barrier(len(results))

    def notify(result: PaymentResult) -> str:
        barrier.wait()
        return _apply(pg, result).outcome

    with ThreadPoolExecutor(len(results)) as pool:
        outcomes = list(pool.map(notify, results))
    assert sorted(set(outcomes)) == ["already_captured", "captured", "duplicate"]
    assert outcomes.count("captured") == 1 and outcomes.count("duplicate") == 1
    assert _count(pg, Receipt) == 1 and _count(pg, DepartmentEvent) == 1
    assert _count(pg, Refund) == 1


def test_pg_execute_keeps_one_cursor_per_statement_and_connection(pg) -> None:
    """The driver statements reuse one cursor per statement and DBAPI connection, across
    transactions (a cursor keeps its dumpers only while it runs the same query), and a new
    connection (after the old ones are closed) gets its own."""
    used: list[tuple[object, str, object]] = []
    one, two = "SELECT %(x)s::int", "SELECT 2"

    def on_statement(conn, cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        used.append((conn.connection.driver_connection, statement, cursor))

    event.listen(pg.engine, "before_cursor_execute", on_statement)
    try:
        for round_ in range(2):
            for _ in range(3):
                with transaction(pg.sessions) as s:
                    assert pg_execute(s, one, {"x": 7}) == [(7,)]
                    assert pg_execute(s, two, {}) == [(2,)]
            if round_ == 0:
                first = {id(driver) for driver, _sql, _cursor in used}
                pg.engine.dispose()  # closes the pooled connections
    finally:
        event.remove(pg.engine, "before_cursor_execute", on_statement)
    cursors: dict[tuple[int, str], set[int]] = {}
    for driver, sql, cursor in used:
        assert (cursor.connection is driver and not cursor.closed) or driver.closed
        cursors.setdefault((id(driver), sql), set()).add(id(cursor))
    assert all(len(ids) == 1 for ids in cursors.values())
    per_connection: dict[int, set[int]] = {}
    for (driver_id, _sql), ids in cursors.items():
        per_connection.setdefault(driver_id, set()).update(ids)
    assert all(len(ids) == 2 for ids in per_connection.values()), "one cursor per statement"
    assert set(per_connection) - first, "the connections opened after dispose() have their own"


def test_pg_execute_bounds_the_cursors_of_a_connection(pg, monkeypatch) -> None:
    monkeypatch.setattr("clearing.db._MAX_CURSORS", 3)
    with transaction(pg.sessions) as s:
        for n in range(7):
            assert pg_execute(s, f"SELECT {n}", {}) == [(n,)]
        record = s.connection().connection
        cursors = record.info["feishui.pg_execute.cursors"]
        assert len(cursors) <= 3 and "SELECT 6" in cursors
