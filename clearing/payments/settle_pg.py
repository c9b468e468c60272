"""The settling capture's writes on PostgreSQL: one statement, one round trip, one transaction.

The statement runs on its own, in autocommit (:func:`clearing.db.pg_autocommit`): it is the
whole transaction of an optimistic capture (:func:`clearing.payments.capture.capture`), which
read the attempt and its notice without locks beforehand. It first locks both rows, attempt then
notice (the order of every capture, so two attempts of one notice cannot deadlock), on
condition that each is the version that was read (``xmin``; under READ COMMITTED a row changed
meanwhile is re-read after the lock and the condition checked again). Then it inserts the
journal entry and its postings, the receipt, the ``notice.paid`` event and the gateway
notification, and updates the attempt (succeeded, its money) and the notice (paid): five
statements' worth as data-modifying CTEs, plus the BEGIN and COMMIT of a transaction, in one
round trip (docs/decisions/0010-optimistic-capture.md).

Every write hangs on the guard (``FROM guard``, through ``new_entry``): a row that changed since
it was read, or an entry whose key exists (``ON CONFLICT (idempotency_key) DO NOTHING``), and
nothing at all is written; :func:`settle` returns None and the caller takes the ordinary path,
which locks, looks again and decides. A receipt number already in use, or any other conflict,
raises: the statement, being its own transaction, is rolled back whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Connection

from clearing.db import pg_execute_on
from clearing.ledger.repository import pg_entry_ctes
from clearing.ledger.service import PreparedEntry
from clearing.payments.repository import Versions

SETTLE_SQL = f"""WITH guard_attempt AS MATERIALIZED (
    SELECT id FROM payment_attempts
    WHERE id = %(attempt_id)s AND xmin = %(attempt_version)s::xid
    FOR UPDATE
), guard AS MATERIALIZED (
    SELECT notices.id FROM guard_attempt JOIN notices ON notices.id = %(notice_id)s
    WHERE notices.xmin = %(notice_version)s::xid
    FOR UPDATE OF notices
), {pg_entry_ctes(source="guard")},
settled_attempt AS (
    UPDATE payment_attempts SET state = %(a_state)s, updated_at = %(now)s,
        paid_at = %(a_paid_at)s, gateway_txn_id = %(a_gateway_txn_id)s,
        journal_entry_id = new_entry.id, settles_notice_id = %(notice_id)s
    FROM new_entry WHERE payment_attempts.id = %(attempt_id)s
    RETURNING payment_attempts.id
), settled_notice AS (
    UPDATE notices SET status = 'paid', updated_at = %(now)s
    FROM new_entry WHERE notices.id = %(notice_id)s
    RETURNING notices.id
), receipt AS (
    INSERT INTO receipts (number, check_code, notice_id, attempt_id, payload, payload_sha256,
        signature, key_id, issued_at)
    SELECT %(r_number)s, %(r_check_code)s, %(notice_id)s, %(attempt_id)s, %(r_payload)s,
        %(r_payload_sha256)s, %(r_signature)s, %(r_key_id)s, %(r_issued_at)s
    FROM new_entry
    RETURNING id
), event AS (
    INSERT INTO department_events (department_id, notice_id, type, payload, created_at, state,
        attempts, next_attempt_at)
    SELECT %(e_department_id)s, %(notice_id)s, %(e_type)s, %(e_payload)s, %(e_created_at)s,
        %(e_state)s, %(e_attempts)s, %(e_next_attempt_at)s
    FROM receipt
    RETURNING id
), notification AS (
    INSERT INTO gateway_notifications (gateway, event_id, order_id, outcome, detail, received_at)
    SELECT %(g_gateway)s, %(g_event_id)s, %(g_order_id)s, %(g_outcome)s, %(g_detail)s,
        %(g_received_at)s
    FROM new_entry
    RETURNING id
)
SELECT new_entry.id, (SELECT id FROM receipt), (SELECT id FROM event),
    (SELECT id FROM settled_attempt), (SELECT id FROM settled_notice),
    (SELECT id FROM notification)
FROM new_entry"""


@dataclass(frozen=True, slots=True)
class Settled:
    entry_id: int
    receipt_id: int
    event_id: int


def settle(
    conn: Connection,
    prepared: PreparedEntry,
    *,
    attempt_id: int,
    notice_id: int,
    versions: Versions,
    attempt_values: dict[str, Any],
    receipt: dict[str, Any],
    receipt_json: bytes,
    event: dict[str, Any],
    notification: dict[str, Any],
    now: datetime,
) -> Settled | None:
    """Write the settling capture on ``conn`` (in autocommit: the statement is the
    transaction); None when nothing was written: a row is not the version read, or the entry's
    key exists.

    ``versions``: of the attempt's and the notice's rows as read
    (:func:`clearing.payments.repository.read_for_capture`); ``attempt_values``: ``state``,
    ``paid_at``, ``gateway_txn_id``; ``receipt`` and ``receipt_json``: the row of
    :func:`notices.receipts.signed_receipt` and the canonical bytes it signed, stored as the
    payload's JSON text (the same document, encoded once); ``event``: the row of
    :func:`notices.events.event_row`; ``notification``: the ``gateway_notifications`` row."""
    params = prepared.pg_params()
    params.update(
        attempt_id=attempt_id,
        notice_id=notice_id,
        attempt_version=versions.attempt,
        notice_version=versions.notice,
        now=now,
        a_state=attempt_values["state"],
        a_paid_at=attempt_values["paid_at"],
        a_gateway_txn_id=attempt_values["gateway_txn_id"],
    )
    params.update({f"r_{k}": v for k, v in receipt.items()})
    params["r_payload"] = Json(receipt["payload"], dumps=lambda _doc: receipt_json)
    params.update({f"e_{k}": v for k, v in event.items()})
    params["e_payload"] = Json(event["payload"])
    params.update({f"g_{k}": v for k, v in notification.items()})
    rows = pg_execute_on(conn, SETTLE_SQL, params)
    if not rows:
        return None
    entry_id, receipt_id, event_id, attempt, notice, logged = rows[0]
    if (attempt, notice) != (attempt_id, notice_id) or None in (receipt_id, event_id, logged):
        # Cannot happen: both rows locked, and every insert hangs on the entry. Raised all the
        # same, as a bug; the statement is committed by then, so the message says what it wrote.
        raise RuntimeError(
            f"settling attempt {attempt_id} of notice {notice_id} wrote entry {entry_id}, "
            f"receipt {receipt_id}, event {event_id}, notification {logged} and updated "
            f"attempt {attempt} and notice {notice}"
        )
    return Settled(entry_id, receipt_id, event_id)
