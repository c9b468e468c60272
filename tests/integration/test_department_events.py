"""Department webhooks end to end: the outbox, signed delivery to a real local HTTP server,
backoff, the delivery log, secrets at rest, and two workers at once on PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select, text

from api import runtime
from clearing.config import Settings
from clearing.db import transaction
from clearing.errors import NotFound
from clearing.pii import KeyRing
from notices import events
from notices.codes import generate_code
from notices.event_models import DepartmentEvent, DepartmentWebhook, WebhookDelivery
from notices.models import Department, Notice

NOW = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
DEPT = "成都市公安局交通管理局"
PAID = {"amount_paid": "200.00", "late_fee": "0.00", "paid_at": "2026-11-28T10:30:00+08:00"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(var_dir=tmp_path, env="test", pii_keys=KeyRing.generate_setting("t1"))


# ------------------------------------------------------------------------------ factories


def department_with_notices(session, n: int = 1, *, name: str = DEPT) -> list[Notice]:
    """A department and ``n`` unpaid notices of 200.00 yuan."""
    dept = Department(name=name, kind="police", region_code="510100", created_at=NOW)
    session.add(dept)
    session.flush()
    notices = [
        Notice(
            department_id=dept.id,
            payment_code=generate_code("510100", 2026),
            kind="traffic_fine",
            status="unpaid",
            principal=20_000,
            late_fee_rule={"kind": "none"},
            due_date=date(2026, 12, 10),
            expires_on=date(2026, 12, 31),
            reference=f"REF-{i}",
            description="违停",
            payer_name_enc="enc",
            payer_name_masked="张*三",
            metadata_={},
            created_at=NOW,
            updated_at=NOW,
        )
        for i in range(1, n + 1)
    ]
    session.add_all(notices)
    session.flush()
    return notices


class Receiver:
    """A department's endpoint: a real HTTP server on 127.0.0.1 that checks every signature.

    It answers 400 to a bad signature, else the next of ``answers`` (then ``default``).
    """

    def __init__(self, answers: tuple[int, ...] = (), default: int = 200) -> None:
        self.secret = ""
        self.now: datetime | None = NOW
        """The receiver's clock for the timestamp check; None is the real clock."""
        self.answers = list(answers)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/feishui/events"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, headers, body: bytes) -> int:  # type: ignore[no-untyped-def]
        valid = events.verify_signature(
            self.secret, headers.get("Feishui-Signature"), body, self.now
        )
        with self._lock:
            self.requests.append(
                {
                    "valid": valid,
                    "event": headers.get("Feishui-Event"),
                    "delivery": headers.get("Feishui-Delivery"),
                    "body": json.loads(body),
                }
            )
            if not valid:
                return 400
            return self.answers.pop(0) if self.answers else self.default

    def _handler(self):  # type: ignore[no-untyped-def]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(receiver._answer(self.headers, body))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator:
    started: list[Receiver] = []

    def start(*answers: int, default: int = 200) -> Receiver:
        started.append(Receiver(answers, default))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def subscribed(db, settings, url: str, n: int = 1) -> tuple[list[int], str]:
    """``n`` notices of a department whose webhook points at ``url``; returns ids and secret."""
    with db.session() as session, session.begin():
        notices = department_with_notices(session, n)
        secret = events.set_webhook(session, DEPT, url, settings=settings, now=NOW)
        return [x.id for x in notices], secret


def record(db, notice_id: int, type: str = "notice.paid", extra: dict | None = None) -> int | None:
    with db.session() as session, session.begin():
        notice = session.get(Notice, notice_id)
        return events.record_event(session, notice, type, extra or PAID, now=NOW)


def the_event(db) -> DepartmentEvent:
    with db.session() as session:
        return session.scalars(select(DepartmentEvent)).one()


def deliveries(db) -> list[WebhookDelivery]:
    with db.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive UTC datetimes; PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


# ------------------------------------------------------------------------------ recording


def test_recording_the_same_event_twice_gives_one_event(db, settings) -> None:
    [notice_id], _ = subscribed(db, settings, "https://dept.example.cn/hooks")
    first = record(db, notice_id)
    assert first is not None
    assert record(db, notice_id, extra={"amount_paid": "999.00"}) is None
    assert record(db, notice_id, "notice.refunded", {"amount_refunded": "200.00"}) is not None
    with db.session() as session:
        stored = session.scalars(select(DepartmentEvent).order_by(DepartmentEvent.id)).all()
        notice = session.get(Notice, notice_id)
    assert [(e.type, e.state, e.attempts) for e in stored] == [
        ("notice.paid", "pending", 0),
        ("notice.refunded", "pending", 0),
    ]
    assert utc(stored[0].next_attempt_at) == NOW
    assert stored[0].payload == {
        "notice_id": notice_id,
        "payment_code": notice.payment_code,
        "reference": "REF-1",
        "kind": "traffic_fine",
        "status": "paid",
        "principal": "200.00",
        "currency": "CNY",
        **PAID,
    }


def test_an_event_is_recorded_only_if_its_transaction_commits(db, settings) -> None:
    [notice_id], _ = subscribed(db, settings, "https://dept.example.cn/hooks")
    with db.session() as session:
        session.begin()
        events.record_event(session, session.get(Notice, notice_id), "notice.expired")
        session.rollback()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DepartmentEvent)) == 0


def test_floats_and_unknown_types_are_refused(db, settings) -> None:
    [notice_id], _ = subscribed(db, settings, "https://dept.example.cn/hooks")
    with pytest.raises(ValueError, match="never floats"):
        record(db, notice_id, extra={"amount_paid": 200.0})
    with pytest.raises(ValueError, match="unknown event type"):
        record(db, notice_id, "notice.created")


def test_without_a_webhook_the_event_is_no_webhook_and_never_sent(db, settings) -> None:
    with db.session() as session, session.begin():
        [notice] = department_with_notices(session)
        notice_id = notice.id
    record(db, notice_id, "notice.expired", {})
    event = the_event(db)
    assert (event.state, event.next_attempt_at, event.payload["status"]) == (
        "no_webhook",
        None,
        "expired",
    )
    assert events.deliver_due_events(db.sessions, now=NOW, settings=settings) == 0


# ------------------------------------------------------------------------------ delivery


def test_failed_deliveries_are_retried_on_the_backoff_until_delivered(
    db, settings, receiver
) -> None:
    endpoint = receiver(500, 500, 200)
    [notice_id], endpoint.secret = subscribed(db, settings, endpoint.url)
    event_id = record(db, notice_id)

    def deliver(at: datetime) -> int:
        endpoint.now = at
        return events.deliver_due_events(db.sessions, now=at, settings=settings)

    assert deliver(NOW) == 1
    event = the_event(db)
    assert (event.state, event.attempts, utc(event.next_attempt_at)) == (
        "pending",
        1,
        NOW + timedelta(seconds=60),
    )
    assert deliver(NOW + timedelta(seconds=59)) == 0  # not due yet
    assert deliver(NOW + timedelta(seconds=60)) == 1
    event = the_event(db)
    assert (event.attempts, utc(event.next_attempt_at)) == (2, NOW + timedelta(seconds=360))
    assert deliver(NOW + timedelta(seconds=359)) == 0
    assert deliver(NOW + timedelta(seconds=360)) == 1
    event = the_event(db)
    assert (event.state, event.attempts, event.next_attempt_at) == ("delivered", 3, None)
    assert utc(event.delivered_at) == NOW + timedelta(seconds=360)
    assert deliver(NOW + timedelta(days=2)) == 0

    log = deliveries(db)
    assert [(d.attempt_no, d.status_code, d.error) for d in log] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 200, None),
    ]
    assert [utc(d.started_at) for d in log] == [
        NOW,
        NOW + timedelta(seconds=60),
        NOW + timedelta(seconds=360),
    ]
    assert all(d.url == endpoint.url and d.duration_ms >= 0 for d in log)
    got = endpoint.requests
    assert len(got) == 3 and all(r["valid"] for r in got)
    assert {(r["event"], r["delivery"]) for r in got} == {("notice.paid", str(event_id))}
    assert got[0]["body"]["id"] == event_id and got[0]["body"]["type"] == "notice.paid"
    assert got[0]["body"]["data"]["amount_paid"] == "200.00"


def test_after_the_last_backoff_the_event_fails(db, settings, receiver) -> None:
    endpoint = receiver(default=503)
    [notice_id], endpoint.secret = subscribed(db, settings, endpoint.url)
    record(db, notice_id)
    at = NOW
    for wait in (*events.BACKOFF_SECONDS, None):
        endpoint.now = at
        assert events.deliver_due_events(db.sessions, now=at, settings=settings) == 1
        if wait is not None:
            at += timedelta(seconds=wait)
    event = the_event(db)
    assert (event.state, event.attempts, event.next_attempt_at) == ("failed", 7, None)
    assert [d.attempt_no for d in deliveries(db)] == [1, 2, 3, 4, 5, 6, 7]
    assert (
        events.deliver_due_events(db.sessions, now=at + timedelta(days=9), settings=settings) == 0
    )


def test_an_unreachable_endpoint_is_logged_and_retried(db, settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [notice_id], _ = subscribed(db, settings, f"http://127.0.0.1:{port}/hooks")
    record(db, notice_id)
    assert events.deliver_due_events(db.sessions, now=NOW, settings=settings) == 1
    [attempt] = deliveries(db)
    assert attempt.status_code is None and attempt.error.startswith("ConnectError")
    assert the_event(db).state == "pending" and the_event(db).attempts == 1


def test_rotating_the_secret_replaces_the_old_one(db, settings, receiver) -> None:
    endpoint = receiver()
    [notice_id], old = subscribed(db, settings, endpoint.url)
    with db.session() as session, session.begin():
        new = events.set_webhook(session, DEPT, endpoint.url, settings=settings)
    assert new != old and new.startswith("whsec_")
    record(db, notice_id)
    endpoint.secret = old  # the department has not updated its secret yet
    events.deliver_due_events(db.sessions, now=NOW, settings=settings)
    assert the_event(db).state == "pending" and deliveries(db)[0].status_code == 400
    endpoint.secret, endpoint.now = new, NOW + timedelta(seconds=60)
    events.deliver_due_events(db.sessions, now=endpoint.now, settings=settings)
    assert the_event(db).state == "delivered"


def test_events_of_a_disabled_webhook_become_no_webhook(db, settings) -> None:
    [notice_id], _ = subscribed(db, settings, "https://dept.example.cn/hooks")
    record(db, notice_id)
    with db.session() as session, session.begin():
        events.disable_webhook(session, DEPT)
    assert events.deliver_due_events(db.sessions, now=NOW, settings=settings) == 0
    assert the_event(db).state == "no_webhook"
    with db.session() as session, session.begin(), pytest.raises(NotFound):
        events.set_webhook(session, "无此部门", "https://x.example.cn", settings=settings)


def test_the_secret_is_encrypted_at_rest(db, settings) -> None:
    _, secret = subscribed(db, settings, "https://dept.example.cn/hooks")
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM department_webhooks")).all()
    assert len(rows) == 1
    assert secret not in repr(rows) and secret[6:] not in repr(rows)
    with db.session() as session:
        hook = session.scalars(select(DepartmentWebhook)).one()
    keyring = KeyRing.from_setting(settings.pii_keys)
    assert (
        keyring.decrypt(
            hook.secret_enc, aad=f"department_webhook:{hook.department_id}:secret".encode()
        )
        == secret
    )


# ------------------------------------------------------------------------------ concurrency


def test_two_workers_deliver_each_event_exactly_once(pg, settings, receiver) -> None:
    endpoint = receiver()
    ids, endpoint.secret = subscribed(pg, settings, endpoint.url, n=40)
    for notice_id in ids:
        record(pg, notice_id)
    start = threading.Barrier(2)
    made: list[int] = []

    def worker() -> None:
        start.wait()
        made.append(events.deliver_due_events(pg.sessions, now=NOW, settings=settings))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(made) == 40 and all(n > 0 for n in made), made
    delivered = [r["delivery"] for r in endpoint.requests]
    assert len(delivered) == len(set(delivered)) == 40
    assert all(r["valid"] for r in endpoint.requests)
    with pg.session() as session:
        states = session.execute(
            select(DepartmentEvent.state, func.count()).group_by(DepartmentEvent.state)
        ).all()
        logged = session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert states == [("delivered", 40)] and logged == 40


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(embedded_cli):
    return embedded_cli


def test_webhook_commands(cli, capsys, receiver) -> None:
    assert cli("db", "upgrade") == 0
    sessions = runtime.get_runtime().sessions
    with transaction(sessions) as session:
        [notice] = department_with_notices(session)
    endpoint = receiver()
    endpoint.now = None  # the CLI delivers on the real clock
    capsys.readouterr()
    assert cli("department", "webhook", DEPT, "--url", endpoint.url) == 0
    out = capsys.readouterr().out
    endpoint.secret = next(
        line.split()[-1] for line in out.splitlines() if line.startswith("signing secret:")
    )
    assert endpoint.secret.startswith("whsec_") and "not shown again" in out
    with transaction(sessions) as session:
        events.record_event(session, session.get(Notice, notice.id), "notice.paid", PAID)

    assert cli("webhooks", "deliver") == 0
    assert capsys.readouterr().out == "1 delivery attempt(s) made\n"
    assert len(endpoint.requests) == 1 and endpoint.requests[0]["valid"]
    assert cli("webhooks", "log", "--department", DEPT) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "notice.paid" in line and " 200 " in line and "delivered" in line and DEPT in line

    assert cli("department", "webhook", DEPT, "--url", "http://dept.example.cn/h") == 2
    assert "https://" in capsys.readouterr().err
    assert cli("webhooks", "log", "--department", "无此部门") == 2
