"""The audit log on SQLite and PostgreSQL: recording, scrubbing, reading back with filters and
a cursor, and the database refusing to change or delete an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from clearing import audit, logs
from clearing.apikeys import issue_key
from clearing.db import transaction
from clearing.errors import ValidationError

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
ID_NUMBER = "11010519491231002X"


def http_request(ip="203.0.113.7", agent="curl/8.5"):
    return SimpleNamespace(
        client=SimpleNamespace(host=ip),
        headers={"user-agent": agent},
        state=SimpleNamespace(request_id="state-id"),
    )


def test_record_who_what_when_where_and_which_request(db):
    key = issue_key()
    with transaction(db.sessions) as s, logs.bound("req-42"):
        event = audit.record(
            s,
            audit.Actor("user", "alice"),
            "apikey.revoke",
            audit.Target("api_key", key.prefix),
            {
                "reason": f"leaked as {key.full}",
                "secret": "hunter2",
                "payer": {"id_number": "x"},
                "note": f"payer {ID_NUMBER}",
                "count": 3,
            },
            request=http_request(),
            now=T0,
        )
    with transaction(db.sessions) as s:
        (stored,) = audit.list_events(s).events
    assert stored.id == event.id
    assert (stored.actor_type, stored.actor_id, stored.action) == ("user", "alice", "apikey.revoke")
    assert (stored.target_type, stored.target_id) == ("api_key", key.prefix)
    assert (stored.ip, stored.user_agent, stored.request_id) == (
        "203.0.113.7",
        "curl/8.5",
        "req-42",
    )
    assert stored.occurred_at.replace(tzinfo=UTC) == T0
    details = stored.details
    assert details["secret"] == "[REDACTED]" and details["payer"]["id_number"] == "[REDACTED]"
    assert key.secret not in details["reason"] and ID_NUMBER not in details["note"]
    assert details["count"] == 3


def test_actor_strings_tuples_and_the_request_state_id(db):
    with transaction(db.sessions) as s:
        event = audit.record(
            s, "department:12", "notice.cancel", ("notice", 99), request=http_request()
        )
    assert (event.actor_type, event.actor_id, event.target_id) == ("department", "12", "99")
    assert event.request_id == "state-id" and event.details == {}
    with pytest.raises(ValidationError):
        audit.Actor("robot", "r2")
    with pytest.raises(ValidationError):
        audit._actor("alice")


def test_list_filters_and_pages_newest_first(db):
    with transaction(db.sessions) as s:
        for i in range(7):
            audit.record(
                s,
                audit.Actor("user", "alice" if i % 2 else "bob"),
                "user.login",
                ("user", i),
                now=T0 + timedelta(minutes=i),
            )
        audit.record(s, audit.SYSTEM, "ledger.seal", ("ledger", None), now=T0)
    with transaction(db.sessions) as s:
        page = audit.list_events(s, audit.AuditFilters(action="user.login", limit=3))
        ids = [e.target_id for e in page.events]
        while page.next_cursor:
            page = audit.list_events(
                s, audit.AuditFilters(action="user.login", limit=3), page.next_cursor
            )
            ids += [e.target_id for e in page.events]
        assert ids == ["6", "5", "4", "3", "2", "1", "0"]
        alice = audit.list_events(s, audit.AuditFilters(actor_type="user", actor_id="alice"))
        assert [e.target_id for e in alice.events] == ["5", "3", "1"]
        window = audit.list_events(
            s, audit.AuditFilters(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
        )
        assert [e.target_id for e in window.events] == ["3", "2"]
        with pytest.raises(ValidationError):
            audit.list_events(s, cursor="not-a-cursor")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor_id = 'mallory'",
        "DELETE FROM audit_events",
    ],
)
def test_the_database_refuses_to_change_the_audit_log(db, statement):
    with transaction(db.sessions) as s:
        audit.record(s, audit.SYSTEM, "ledger.seal", ("ledger", None))
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(statement))
    if db.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    with transaction(db.sessions) as s:
        assert audit.list_events(s).events[0].actor_id == "feishui"
