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
from tests.e2e.test_payment_flow import act, open_gateway
from tests.faults.helpers import assert_sound, simulator

NOTIFY = "/v1/gateways/alipay/notify"


def _attempt(db, order_id: str) -> PaymentAttempt:
    with transaction(db.sessions) as s:
        return s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)).one()


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # a backend to terminate
def test_connection_dropped_at_the_capture_commit_then_the_retry_captures_once(db, platform):
    pg = db
    client, notice = platform("alipay")
    order_id = open_gateway(client, notice["payment_code"], "wallet")
    act(client, "alipay", order_id, "pay_lose_notify")
    _url, headers, body = simulator(client, "alipay").build_notify(
        simulator(client, "alipay").book.get(order_id)
    )
    dropped, capturing = [], set()

    def note_capture(conn, _cursor, statement, params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        # The settling capture writes its gateway notification in its one write statement
        # (clearing.payments.settle_pg), in its transaction.
        if "INSERT INTO gateway_notifications" in statement and (
            isinstance(params, dict) and params.get("g_outcome") == "captured"
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
