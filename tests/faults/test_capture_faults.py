"""Faults around a capture: the database connection dropped at commit, Redis down when a
duplicate payment's refund must be enqueued, a gateway that times out and then answers twice.

Each test ends with nothing lost, nothing duplicated, ``LedgerService.verify()`` ok and the
trial balance balanced (:func:`tests.faults.helpers.assert_sound`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from clearing.config import get_settings
from clearing.db import transaction
from clearing.payments.models import GatewayNotification, PaymentAttempt, Refund
from clearing.payments.tasks import process_submitted_refunds, query_attempt
from gateways.protocol import GatewayUnavailable
from notices.models import Notice
from notices.receipt_models import Receipt
from notices.service import today_in_shanghai
from tests.e2e.test_payment_flow import act, open_gateway
from tests.faults.helpers import assert_sound, simulator

NOTIFY = "/v1/gateways/alipay/notify"


def _attempt(db, order_id: str) -> PaymentAttempt:
    with transaction(db.sessions) as s:
        return s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)).one()


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # a backend to terminate
def test_connection_dropped_as_the_optimistic_write_is_sent_then_the_ordinary_path_captures(
    db, platform
):
    """The optimistic capture's one write statement is its transaction, on a connection that
    was not pinged. The connection dies as the write is sent: nothing is half-written, the
    dead connection leaves the pool, and the same request captures the ordinary way (it locks
    and looks first, so it could not capture twice had the write committed). The gateway's
    late retries are acknowledged without a second capture."""
    pg = db
    client, notice = platform("alipay")
    order_id, body, headers = _paid_with_lost_notify(client, notice["payment_code"])
    # The first capture of this database opened its ledger accounts the ordinary way; a second
    # notice, paid with the accounts in place, is the optimistic one.
    order_id, body, headers = _second_payment(client, order_id, body, headers)
    dropped: list[int] = []
    statements: list[str] = []

    def kill_own_backend(conn, cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()[:2]))
        if dropped or not statement.startswith("WITH guard_attempt"):
            return
        pid = cursor.connection.info.backend_pid
        with pg.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()
        dropped.append(pid)

    event.listen(Engine, "before_cursor_execute", kill_own_backend)  # the app has its own
    try:
        first = client.post(NOTIFY, content=body, headers=headers)
    finally:
        event.remove(Engine, "before_cursor_execute", kill_own_backend)
    assert dropped and first.status_code == 200 and first.text.strip() == "success"
    write = statements.index("WITH guard_attempt")  # the optimistic write, then ordinary
    assert [words.split()[0] for words in statements[:write]] in (["SELECT"], ["SELECT"] * 2)
    assert "INSERT INTO" in statements[write + 1 :]
    assert _attempt(pg, order_id).state == "succeeded"

    again = client.post(NOTIFY, content=body, headers=headers)  # the gateway retries, late
    assert again.text.strip() == "success"
    with transaction(pg.sessions) as s:
        outcomes = s.scalars(
            select(GatewayNotification.outcome).where(GatewayNotification.order_id == order_id)
        ).all()
    assert sorted(outcomes) == ["already_captured", "captured"]
    assert_sound(pg, entries=2, paid_notices=2)


def _second_payment(client, first_order: str, body: bytes, headers: dict):  # type: ignore[no-untyped-def]
    """Capture ``first_order`` (its notify: ``body``, ``headers``); then open a second notice,
    pay it with its notify lost, and return that order and its notify."""
    assert client.post(NOTIFY, content=body, headers=headers).text.strip() == "success"
    created = client.post(
        "/v1/notices",
        headers={"Authorization": f"Bearer {client.keys['police']}"},
        json={
            "kind": "traffic_fine",
            "payer": {"name": "张小三"},  # the name open_gateway looks for, masked
            "items": [{"item_code": "TF-RED-LIGHT"}],
            "decision_date": today_in_shanghai().isoformat(),
            "reference": "JT-2026-002",
            "description": "闯红灯",
        },
    )
    assert created.status_code == 201, created.text
    return _paid_with_lost_notify(client, created.json()["payment_code"])


def _paid_with_lost_notify(client, code: str):  # type: ignore[no-untyped-def]
    """The citizen pays notice ``code`` at the Alipay simulator, whose notify is lost; returns
    the order id and the notify the gateway would have sent (body, headers)."""
    order_id = open_gateway(client, code, "wallet")
    act(client, "alipay", order_id, "pay_lose_notify")
    sim = simulator(client, "alipay")
    _url, headers, body = sim.build_notify(sim.book.get(order_id))
    return order_id, body, headers


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # a backend to terminate
def test_connection_dropped_at_the_ordinary_capture_commit_then_the_retry_captures_once(
    db, platform
):
    """The ordinary path (the first capture of a database takes it: its ledger accounts are not
    cached yet): the connection dies just before COMMIT."""
    pg = db
    client, notice = platform("alipay")
    order_id, body, headers = _paid_with_lost_notify(client, notice["payment_code"])
    dropped, capturing = [], set()

    def note_capture(conn, _cursor, statement, params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        # The ordinary capture logs its gateway notification in its transaction.
        if "INSERT INTO gateway_notifications" in statement and (
            isinstance(params, dict) and params.get("outcome") == "captured"
        ):
            capturing.add(id(conn.connection.dbapi_connection))

    def kill_own_backend(session: Session) -> None:
        # Only the capture's transaction, only once: its connection dies just before COMMIT.
        conn = session.connection()
        if dropped or id(conn.connection.dbapi_connection) not in capturing:
            return
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with pg.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()
        dropped.append(pid)

    event.listen(Engine, "before_cursor_execute", note_capture)  # the app has its own
    event.listen(Session, "before_commit", kill_own_backend)
    try:
        gateway = TestClient(
            client.app, base_url="http://testserver", raise_server_exceptions=False
        )
        first = gateway.post(NOTIFY, content=body, headers=headers)
    finally:
        event.remove(Session, "before_commit", kill_own_backend)
        event.remove(Engine, "before_cursor_execute", note_capture)
    assert dropped and first.status_code >= 500 and first.text.strip() != "success"
    with transaction(pg.sessions) as s:  # nothing half-posted
        assert s.get(Notice, notice["id"]).status == "unpaid"
        assert s.scalars(select(Receipt)).first() is None
    assert _attempt(pg, order_id).journal_entry_id is None
    assert_sound(pg, entries=0, paid_notices=0)

    retried = gateway.post(NOTIFY, content=body, headers=headers)  # the gateway retries
    assert retried.status_code == 200 and retried.text.strip() == "success"
    again = gateway.post(NOTIFY, content=body, headers=headers)  # and once more, late
    assert again.text.strip() == "success"
    assert _attempt(pg, order_id).state == "succeeded"
    with transaction(pg.sessions) as s:
        outcomes = s.scalars(
            select(GatewayNotification.outcome).where(GatewayNotification.order_id == order_id)
        ).all()
    assert sorted(outcomes) == ["already_captured", "captured"]
    assert_sound(pg, entries=1)


def test_redis_down_while_a_duplicate_payment_is_notified(db, platform, monkeypatch):
    client, notice = platform("alipay")
    first = open_gateway(client, notice["payment_code"], "wallet")
    second = open_gateway(client, notice["payment_code"], "wallet")  # a second tab
    act(client, "alipay", first, "pay")
    monkeypatch.setenv("FEISHUI_REDIS_URL", "redis://127.0.0.1:6390/0")  # nothing listens
    get_settings.cache_clear()
    try:
        act(client, "alipay", second, "pay_lose_notify")
        sim = simulator(client, "alipay")
        _url, headers, body = sim.build_notify(sim.book.get(second))
        answer = client.post(NOTIFY, content=body, headers=headers)
        # The capture committed: acknowledged although the refund could not be enqueued.
        assert answer.status_code == 200 and answer.text.strip() == "success"
        assert _attempt(db, second).state == "duplicate"
        with transaction(db.sessions) as s:
            refund = s.scalars(select(Refund)).one()
        assert (refund.kind, refund.state) == ("duplicate", "submitted")

        # The sweep leaves a young refund alone, then processes it once it is old enough.
        assert process_submitted_refunds(db.sessions, client.app.state.payments) == {}
        later = datetime.now(UTC) + timedelta(minutes=6)
        assert process_submitted_refunds(db.sessions, client.app.state.payments, now=later) == {
            "succeeded": 1
        }
        assert process_submitted_refunds(db.sessions, client.app.state.payments, now=later) == {}
    finally:
        monkeypatch.delenv("FEISHUI_REDIS_URL")
        get_settings.cache_clear()
    with transaction(db.sessions) as s:
        assert s.get(Refund, refund.id).state == "succeeded"
    assert_sound(db, entries=3)  # the capture, the duplicate, its refund


def test_gateway_times_out_then_answers_twice(db, platform):
    client, notice = platform("alipay")
    order_id = open_gateway(client, notice["payment_code"], "wallet")
    act(client, "alipay", order_id, "pay_lose_notify")
    ctx = client.app.state.payments
    adapter = ctx.gateways["alipay"]
    real_query, calls = adapter.query, []

    def flaky_query(order: str):
        calls.append(order)
        if len(calls) == 1:
            raise GatewayUnavailable("alipay query timed out")
        return real_query(order)

    adapter.query = flaky_query
    try:
        assert query_attempt(db.sessions, ctx, order_id, "alipay") is None  # timeout
        assert _attempt(db, order_id).state not in ("succeeded", "duplicate")
        answered = query_attempt(db.sessions, ctx, order_id, "alipay")
        assert answered.outcome == "captured"
    finally:
        adapter.query = real_query
    sim = simulator(client, "alipay")
    _url, headers, body = sim.build_notify(sim.book.get(order_id))
    late = client.post(NOTIFY, content=body, headers=headers)  # the same answer, again
    assert late.text.strip() == "success"
    assert _attempt(db, order_id).state == "succeeded"
    assert_sound(db, entries=1)
