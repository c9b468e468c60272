"""The optimistic capture on PostgreSQL (decision 0010): the attempt and its notice are read
without locks, then one statement, its own transaction, locks both and writes only if neither row
changed since the read. Whatever happens between the read and the write, the money ends where
the ordinary, locking path would have put it: one settling capture, a changed notice decided
again, nothing written twice, nothing written half."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError

from clearing import db as db_module
from clearing.db import autocommit_engine, transaction
from clearing.ledger.models import Account, JournalEntry
from clearing.ledger.repository import LedgerRepository, clear_account_cache
from clearing.ledger.service import LedgerService
from clearing.payments import capture as capture_mod
from clearing.payments import repository
from clearing.payments.capture import CaptureOutcome, capture
from clearing.payments.models import GatewayNotification, PaymentAttempt, Refund
from clearing.payments.service import PaymentContext
from clearing.routing import DEFAULT_RULES, Router
from gateways.protocol import Channel, GatewayStatus, PaymentResult
from notices import receipts
from notices.event_models import DepartmentEvent
from notices.models import Notice
from notices.receipt_models import Receipt
from notices.receipts import ESeal, PublishedKeys, verify_receipt
from tests.factories import payable_notice, started_order
from tests.support.fake_gateway import FakeGateway

pytestmark = pytest.mark.postgres

PAID_AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
ESEAL = ESeal(Ed25519PrivateKey.generate())


@pytest.fixture
def gateways():
    return {"alipay": FakeGateway("alipay"), "unionpay": FakeGateway("unionpay", Channel.BANK)}


@pytest.fixture
def ctx(gateways):
    return PaymentContext(gateways, Router(DEFAULT_RULES), "https://pay.example.gov.cn", ESEAL)


@pytest.fixture
def warm(pg, ctx, gateways, tmp_path):
    """One capture done, so that the ledger accounts exist (the first capture of a database
    opens them, in the ordinary path: the optimistic one never opens an account), and cached."""
    _, code = _notice(pg, tmp_path, "成都市公安局交通管理局 一")
    assert _capture(pg, gateways["alipay"].pay(_start(pg, ctx, code), PAID_AT)) == "captured"
    with transaction(pg.sessions) as s:
        LedgerRepository(s).accounts(s.scalars(select(Account.code)).all())
    return pg


def _notice(db, tmp_path, department: str = "成都市公安局交通管理局") -> tuple[int, str]:
    return payable_notice(db, tmp_path, department)


def _start(db, ctx, code: str, channel: str = "wallet") -> str:
    return started_order(db, ctx, code, channel, PAID_AT)


def _capture(db, result) -> str:
    return capture(db.sessions, result, source="notify", eseal=ESEAL).outcome


def _between_read_and_write(monkeypatch, action) -> list[str]:
    """Run ``action()`` once, right after the optimistic capture's read; returns a list that
    records whether the optimistic write then wrote ("written") or not ("declined": whatever
    the reason the ordinary path is taken)."""
    real_read = repository.read_for_capture
    real_optimistic = capture_mod._capture_optimistically
    done: list[str] = []

    def read(conn, order_id):  # type: ignore[no-untyped-def]
        found = real_read(conn, order_id)
        if not done:
            done.append("read")
            action()
        return found

    depth = [0]  # the action may capture too: only the outer capture is recorded

    def optimistic(*args, **kwargs):  # type: ignore[no-untyped-def]
        depth[0] += 1
        try:
            outcome = real_optimistic(*args, **kwargs)
        finally:
            depth[0] -= 1
        if depth[0] == 0 and done == ["read"]:
            done.append("written" if isinstance(outcome, CaptureOutcome) else "declined")
        return outcome

    monkeypatch.setattr(repository, "read_for_capture", read)
    monkeypatch.setattr(capture_mod, "_capture_optimistically", optimistic)
    return done


def _sql(db, statement: str, **params) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _counts(db) -> dict[str, int]:
    with transaction(db.sessions) as s:
        return {
            name: s.scalar(select(func.count()).select_from(model))
            for name, model in {
                "entries": JournalEntry,
                "receipts": Receipt,
                "events": DepartmentEvent,
                "refunds": Refund,
                "notifications": GatewayNotification,
            }.items()
        }


def _sound(db) -> None:
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.trial_balance().balanced
        assert ledger.verify().ok


def test_an_unchanged_notice_is_captured_by_the_optimistic_write(warm, ctx, gateways, tmp_path):
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    before = _counts(warm)
    assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "captured"
    after = _counts(warm)
    assert {k: after[k] - before[k] for k in after} == {
        "entries": 1,
        "receipts": 1,
        "events": 1,
        "refunds": 0,
        "notifications": 1,
    }
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
        receipt = s.scalars(select(Receipt).where(Receipt.notice_id == notice_id)).one()
        stored = s.scalar(
            text("SELECT payload::text FROM receipts WHERE id = :id"), {"id": receipt.id}
        )
    assert verify_receipt(receipt, PublishedKeys({ESEAL.key_id: ESEAL.public_key})).ok
    # the JSON text stored is the canonical document that was signed, encoded once
    assert stored.encode() == receipts.canonical_bytes(receipt.payload)
    assert hashlib.sha256(stored.encode()).hexdigest() == receipt.payload_sha256
    _sound(warm)


def test_accounts_are_read_once_then_cached(warm, ctx, gateways, tmp_path, monkeypatch):
    """The optimistic capture reads the ledger accounts it does not have cached (committed rows
    only: it opens none), then has them cached."""
    clear_account_cache()
    statements: list[str] = []

    def on_statement(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    event.listen(warm.engine, "before_cursor_execute", on_statement)
    try:
        for department in ("成都市公安局交通管理局 二", "成都市公安局交通管理局 三"):
            _, code = _notice(warm, tmp_path, department)
            order_id = _start(warm, ctx, code)
            statements.clear()
            assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "captured"
            if department.endswith("二"):
                assert [s.split()[0] for s in statements] == ["SELECT", "SELECT", "WITH"]
                assert "FROM ledger_accounts" in " ".join(statements)
            else:
                assert [s.split()[0] for s in statements] == ["SELECT", "WITH"]
    finally:
        event.remove(warm.engine, "before_cursor_execute", on_statement)
    _sound(warm)


def test_a_notice_cancelled_after_the_read_is_not_settled(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The payment arrives for a notice the department cancels in the same instant: the
    optimistic write finds the notice changed and writes nothing; the ordinary path sees it
    cancelled, so the money is a duplicate payment, captured to refunds payable and refunded."""
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    done = _between_read_and_write(
        monkeypatch,
        lambda: _sql(warm, "UPDATE notices SET status = 'cancelled' WHERE id = :id", id=notice_id),
    )
    before = _counts(warm)
    assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "duplicate"
    assert done == ["read", "declined"]
    after = _counts(warm)
    assert after["receipts"] == before["receipts"] and after["refunds"] == before["refunds"] + 1
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "cancelled"
        attempt = s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)).one()
    assert (attempt.state, attempt.settles_notice_id) == ("duplicate", None)
    _sound(warm)


def test_any_change_to_the_notice_sends_the_capture_the_ordinary_way(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The guard is the row's version, not a list of columns: a change the capture does not
    read still makes the write decline, and the ordinary path captures once."""
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    done = _between_read_and_write(
        monkeypatch,
        lambda: _sql(
            warm, "UPDATE notices SET updated_at = updated_at WHERE id = :id", id=notice_id
        ),
    )
    before = _counts(warm)
    assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "captured"
    assert done == ["read", "declined"]
    after = _counts(warm)
    assert after["entries"] == before["entries"] + 1 and after["receipts"] == before["receipts"] + 1
    with transaction(warm.sessions) as s:
        logged = s.scalars(
            select(GatewayNotification.outcome).where(GatewayNotification.order_id == order_id)
        ).all()
    assert logged == ["captured"]
    _sound(warm)


def test_an_attempt_captured_after_the_read_is_not_captured_again(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The same notify twice, the second read before the first wrote: one capture."""
    _, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    result = gateways["alipay"].pay(order_id, PAID_AT)
    first: list[str] = []
    done = _between_read_and_write(monkeypatch, lambda: first.append(_capture(warm, result)))
    before = _counts(warm)
    assert _capture(warm, result) == "already_captured"
    assert first == ["captured"] and done == ["read", "declined"]
    after = _counts(warm)
    assert after["entries"] == before["entries"] + 1 and after["receipts"] == before["receipts"] + 1
    _sound(warm)


def test_another_attempt_settling_the_notice_after_the_read_makes_this_one_a_duplicate(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """Two tabs: the bank's notify settles the notice between the wallet notify's read and its
    write. The wallet payment is then a duplicate, refunded; the notice has one receipt."""
    notice_id, code = _notice(warm, tmp_path)
    wallet, bank = _start(warm, ctx, code, "wallet"), _start(warm, ctx, code, "bank")
    other: list[str] = []
    done = _between_read_and_write(
        monkeypatch,
        lambda: other.append(_capture(warm, gateways["unionpay"].pay(bank, PAID_AT))),
    )
    assert _capture(warm, gateways["alipay"].pay(wallet, PAID_AT)) == "duplicate"
    assert done == ["read", "declined"]
    assert other == ["captured"]  # the bank's notify was not delayed: it wrote at once
    with transaction(warm.sessions) as s:
        assert s.scalar(select(func.count()).where(Receipt.notice_id == notice_id)) == 1
        settling = s.scalars(
            select(PaymentAttempt.order_id).where(PaymentAttempt.settles_notice_id == notice_id)
        ).all()
    assert settling == [bank]
    _sound(warm)


def test_a_notice_changed_while_the_write_waits_for_its_lock(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The real race: another transaction holds the notice's lock when the write arrives, and
    cancels the notice while the write waits. Once it commits, PostgreSQL re-reads the notice
    for the waiting write (READ COMMITTED), finds another version, and the write writes nothing;
    the ordinary path then decides (a duplicate payment)."""
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    locked, errors = threading.Event(), []

    def hold_then_cancel() -> None:
        try:
            with warm.engine.begin() as conn:
                conn.execute(
                    text("SELECT 1 FROM notices WHERE id = :id FOR UPDATE"), {"id": notice_id}
                )
                locked.set()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # until the capture waits for this lock
                    waiting = conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    ).scalar()
                    if waiting:
                        break
                    time.sleep(0.01)
                else:
                    raise AssertionError("the optimistic write never waited for the lock")
                conn.execute(
                    text("UPDATE notices SET status = 'cancelled' WHERE id = :id"),
                    {"id": notice_id},
                )
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
            locked.set()

    holder = threading.Thread(target=hold_then_cancel)

    def start_holder() -> None:
        holder.start()
        assert locked.wait(10)

    done = _between_read_and_write(monkeypatch, start_holder)
    outcome = _capture(warm, gateways["alipay"].pay(order_id, PAID_AT))
    holder.join(10)
    assert errors == []
    assert done == ["read", "declined"] and outcome == "duplicate"
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "cancelled"
        assert s.scalar(select(func.count()).where(Receipt.notice_id == notice_id)) == 0
    _sound(warm)


def test_a_write_that_fails_writes_nothing_at_all(warm, ctx, gateways, tmp_path, monkeypatch):
    """The write is one statement and its own transaction: a row it cannot write (here an event
    state no CHECK admits) rolls back the entry, postings, updates and receipt with it."""
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    real_event_row = capture_mod.event_row

    def broken_event_row(*args, **kwargs):  # type: ignore[no-untyped-def]
        return {**real_event_row(*args, **kwargs), "state": "bogus"}

    monkeypatch.setattr(capture_mod, "event_row", broken_event_row)
    statements: list[str] = []

    def on_statement(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0])

    before = _counts(warm)
    event.listen(warm.engine, "before_cursor_execute", on_statement)
    try:
        with pytest.raises(IntegrityError, match="ck_department_events"):
            _capture(warm, gateways["alipay"].pay(order_id, PAID_AT))
    finally:
        event.remove(warm.engine, "before_cursor_execute", on_statement)
    assert statements == ["SELECT", "WITH"]  # the optimistic write failed; nothing else ran
    assert _counts(warm) == before
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "unpaid"
        attempt = s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)).one()
    assert (attempt.state, attempt.journal_entry_id) == ("redirected", None)
    _sound(warm)


def test_a_dead_pooled_connection_sends_the_capture_the_ordinary_way(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The optimistic capture's pool does not ping at checkout (decision 0010). Every pooled
    connection dies (as when PostgreSQL restarts): the optimistic read fails on its dead
    connection, which leaves the pool, and the capture is done the ordinary way (its pool pings
    and reconnects). The next capture gets a live connection and is optimistic again."""
    with autocommit_engine(warm.engine).connect():  # the companion pool has a connection
        pass
    _sql(
        warm,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    time.sleep(0.2)  # the backends are gone
    outcomes, statements = [], []

    def on_statement(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements[-1].append(" ".join(statement.split()[:2]))

    for department in ("成都市公安局交通管理局 二", "成都市公安局交通管理局 三"):
        _, code = _notice(warm, tmp_path, department)
        order_id = _start(warm, ctx, code)
        statements.append([])
        event.listen(warm.engine, "before_cursor_execute", on_statement)
        try:
            outcomes.append(_capture(warm, gateways["alipay"].pay(order_id, PAID_AT)))
        finally:
            event.remove(warm.engine, "before_cursor_execute", on_statement)
    assert outcomes == ["captured", "captured"]
    # the read on the dead connection failed; then the ordinary path, locking, one by one
    assert statements[0][0].startswith("SELECT") and "WITH guard_attempt" not in statements[0]
    assert "INSERT INTO" in statements[0]
    assert [words.split()[0] for words in statements[1]] == ["SELECT", "WITH"], statements
    assert statements[1][1] == "WITH guard_attempt"
    _sound(warm)


# What can happen to a notice between the optimistic read of attempt A's capture and its write,
# and what A's capture must then come to (A and B are two attempts of one notice).
INTERFERENCES = {
    "nothing": "captured",
    "notice touched": "captured",  # updated_at rewritten: another version, same facts
    "attempt touched": "captured",
    "notice expired": "captured",  # an expired notice still settles (money is never dropped)
    "notice cancelled": "duplicate",
    "A captured meanwhile": "already_captured",
    "B captured meanwhile": "duplicate",
}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    interference=st.sampled_from(sorted(INTERFERENCES)),
    b_pays_after=st.booleans(),
    replays=st.integers(min_value=1, max_value=2),
)
def test_whatever_happens_between_read_and_write_the_books_stay_right(
    warm, ctx, gateways, tmp_path, monkeypatch, interference, b_pays_after, replays
):
    """Property: for each interference, A's capture comes to what the locking path would have
    decided; afterwards at most one attempt settles the notice, with one receipt; each money
    attempt has exactly one entry; a duplicate has its refund; replaying every notify changes
    nothing; the trial balance balances."""
    department = f"成都市公安局交通管理局 {next(_departments)}"
    notice_id, code = _notice(warm, tmp_path, department)
    a, b = _start(warm, ctx, code, "wallet"), _start(warm, ctx, code, "bank")
    paid_a = gateways["alipay"].pay(a, PAID_AT)
    paid_b = gateways["unionpay"].pay(b, PAID_AT)
    actions = {
        "nothing": lambda: None,
        "notice touched": lambda: _sql(
            warm, "UPDATE notices SET updated_at = updated_at WHERE id = :id", id=notice_id
        ),
        "attempt touched": lambda: _sql(
            warm, "UPDATE payment_attempts SET updated_at = updated_at WHERE order_id = :o", o=a
        ),
        "notice expired": lambda: _sql(
            warm, "UPDATE notices SET status = 'expired' WHERE id = :id", id=notice_id
        ),
        "notice cancelled": lambda: _sql(
            warm, "UPDATE notices SET status = 'cancelled' WHERE id = :id", id=notice_id
        ),
        "A captured meanwhile": lambda: _capture(warm, paid_a),
        "B captured meanwhile": lambda: _capture(warm, paid_b),
    }
    with monkeypatch.context() as patch:
        done = _between_read_and_write(patch, actions[interference])
        outcome = _capture(warm, paid_a)
    assert outcome == INTERFERENCES[interference]
    assert done[-1] == ("written" if interference == "nothing" else "declined")
    notifies = [paid_a, paid_b] if b_pays_after or interference.startswith("B") else [paid_a]
    if b_pays_after and not interference.startswith("B"):
        assert _capture(warm, paid_b) == "duplicate"  # the notice is settled or cancelled
    before = _counts(warm)
    for _ in range(replays):
        assert {_capture(warm, paid) for paid in notifies} == {"already_captured"}
    after = _counts(warm)
    assert after["notifications"] == before["notifications"] + replays * len(notifies)
    assert {k: v for k, v in after.items() if k != "notifications"} == {
        k: v for k, v in before.items() if k != "notifications"
    }
    with transaction(warm.sessions) as s:
        attempts = s.scalars(
            select(PaymentAttempt).where(PaymentAttempt.notice_id == notice_id)
        ).all()
        settling = [x for x in attempts if x.settles_notice_id == notice_id]
        money = [x for x in attempts if x.state in ("succeeded", "duplicate")]
        entries = s.scalars(
            select(JournalEntry.idempotency_key).where(
                JournalEntry.idempotency_key.in_([f"capture:{x.order_id}" for x in attempts])
            )
        ).all()
        receipts_of_notice = s.scalar(
            select(func.count()).select_from(Receipt).where(Receipt.notice_id == notice_id)
        )
        refunds = s.scalars(select(Refund.attempt_id).where(Refund.notice_id == notice_id)).all()
        status = s.get(Notice, notice_id).status
    assert len(settling) <= 1 and receipts_of_notice == len(settling)
    assert status == ("paid" if settling else "cancelled")
    assert sorted(entries) == sorted(f"capture:{x.order_id}" for x in money)
    duplicates = [x.id for x in money if x.state == "duplicate"]
    assert sorted(refunds) == sorted(duplicates)
    _sound(warm)


_departments = itertools.count(1)


def test_no_connection_for_the_optimistic_capture_sends_it_the_ordinary_way(
    warm, ctx, gateways, tmp_path, monkeypatch
):
    """The companion pool cannot connect (here: nothing listens on its address; in production,
    say, ``max_connections`` reached): the capture is done the ordinary way all the same."""
    unreachable = create_engine(
        warm.engine.url.set(port=1), isolation_level="AUTOCOMMIT", pool_pre_ping=False
    )
    monkeypatch.setitem(db_module._companions, warm.engine, unreachable)
    notice_id, code = _notice(warm, tmp_path)
    order_id = _start(warm, ctx, code)
    assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "captured"
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
    _sound(warm)


def _paths() -> dict[tuple[str, str], float]:
    samples = REGISTRY.get_sample_value
    return {
        (path, reason): samples("feishui_capture_paths_total", {"path": path, "reason": reason})
        or 0.0
        for path, reason in [
            ("optimistic", ""),
            ("ordinary", "declined"),
            ("ordinary", "not_plain"),
            ("ordinary", "not_a_payment"),
        ]
    }


def test_the_path_of_each_capture_is_counted(warm, ctx, gateways, tmp_path, monkeypatch):
    """``feishui_capture_paths_total`` tells operators how often the optimistic path declines,
    and why (docs/operations.md, Metrics)."""
    before = _paths()
    _, code = _notice(warm, tmp_path, "成都市公安局交通管理局 二")
    plain = gateways["alipay"].pay(_start(warm, ctx, code), PAID_AT)
    assert _capture(warm, plain) == "captured"
    assert _capture(warm, plain) == "already_captured"  # money already taken: not plain
    notice_id, code = _notice(warm, tmp_path, "成都市公安局交通管理局 三")
    order_id, other = _start(warm, ctx, code), _start(warm, ctx, code, "bank")
    _between_read_and_write(
        monkeypatch,
        lambda: _sql(
            warm, "UPDATE notices SET updated_at = updated_at WHERE id = :id", id=notice_id
        ),
    )
    assert _capture(warm, gateways["alipay"].pay(order_id, PAID_AT)) == "captured"
    failed = PaymentResult("unionpay", other, GatewayStatus.FAILED)
    assert _capture(warm, failed) == "state_changed"
    after = _paths()
    assert {k: after[k] - before[k] for k in after} == {
        ("optimistic", ""): 1,
        ("ordinary", "declined"): 1,
        ("ordinary", "not_plain"): 1,
        ("ordinary", "not_a_payment"): 1,
    }


def test_fifty_concurrent_identical_notifies_capture_once(warm, ctx, gateways, tmp_path):
    """The same notify 50 times at once, with the ledger accounts in place so that every one
    tries the optimistic path: one writes; the others are declined by the guard (or see the
    money taken) and the ordinary path acknowledges them without a second capture."""
    notice_id, code = _notice(warm, tmp_path, "成都市公安局交通管理局 二")
    result = gateways["alipay"].pay(_start(warm, ctx, code), PAID_AT)
    before, paths_before = _counts(warm), _paths()
    barrier = threading.Barrier(50)

    def notify(_: int) -> str:
        barrier.wait()
        return _capture(warm, result)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(notify, range(50)))
    assert outcomes.count("captured") == 1 and outcomes.count("already_captured") == 49
    after, paths_after = _counts(warm), _paths()
    assert {k: after[k] - before[k] for k in after} == {
        "entries": 1,
        "receipts": 1,
        "events": 1,
        "refunds": 0,
        "notifications": 50,
    }
    assert paths_after[("optimistic", "")] - paths_before[("optimistic", "")] == 1
    with transaction(warm.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
    _sound(warm)
