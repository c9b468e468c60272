"""The settling capture's writes on PostgreSQL: one statement, one round trip.

Once the attempt and its notice are locked, a settling capture inserts the journal entry and its
postings, the receipt, the ``notice.paid`` event and the gateway notification, and updates the
attempt (succeeded, its money) and the notice (paid). Here they are one statement of
data-modifying CTEs, run on the driver (:func:`clearing.db.pg_execute`), instead of five
statements through SQLAlchemy: the statement count of a capture was most of its CPU, on both
sides of the connection (docs/performance.md, "Capture").

Every write hangs on ``new_entry`` (``FROM new_entry``), the entry inserted ``ON CONFLICT
(idempotency_key) DO NOTHING``: if the key exists, nothing at all is written and the caller takes
the ordinary path (:meth:`clearing.ledger.service.LedgerService.post` replays or refuses the
key). The event hangs on the receipt, because it names the receipt's number: a receipt number
already in use (``ON CONFLICT (number) DO NOTHING``) leaves both out, and the caller inserts them
the ordinary way (:func:`notices.receipts.insert_receipt` draws another number). Any other
conflict (a second receipt or settling attempt for the notice) raises, as the separate statements
did, and the transaction rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Json
from sqlalchemy.orm import Session

from clearing.db import pg_execute
from clearing.ledger.repository import PG_ENTRY_CTES
from clearing.ledger.service import PreparedEntry

SETTLE_SQL = f"""WITH {PG_ENTRY_CTES},
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
    ON CONFLICT (number) DO NOTHING
    RETURNING id
), event AS (
    INSERT INTO department_events (department_id, notice_id, type, payload, created_at, state,
        attempts, next_attempt_at)
    SELECT %(e_department_id)s, %(notice_id)s, %(e_type)s, %(e_payload)s, %(e_created_at)s,
        %(e_state)s, %(e_attempts)s, %(e_next_attempt_at)s
    FROM receipt
    ON CONFLICT (notice_id, type) DO NOTHING
    RETURNING id
), notification AS (
    INSERT INTO gateway_notifications (gateway, event_id, order_id, outcome, detail, received_at)
    SELECT %(g_gateway)s, %(g_event_id)s, %(g_order_id)s, %(g_outcome)s, %(g_detail)s,
        %(g_received_at)s
    FROM new_entry
    RETURNING id
)
SELECT new_entry.id, (SELECT id FROM receipt), (SELECT id FROM event),
    (SELECT id FROM settled_attempt), (SELECT id FROM settled_notice)
FROM new_entry"""


@dataclass(frozen=True, slots=True)
class Settled:
    entry_id: int
    receipt_id: int | None
    """None when the receipt's number was in use: no receipt and no event were written."""
    event_id: int | None


def settle(
    session: Session,
    prepared: PreparedEntry,
    *,
    attempt_id: int,
    notice_id: int,
    attempt_values: dict[str, Any],
    receipt: dict[str, Any],
    receipt_json: bytes,
    event: dict[str, Any],
    notification: dict[str, Any],
    now: datetime,
) -> Settled | None:
    """Write the settling capture; None when the entry's key exists (then nothing is written).

    ``attempt_values``: ``state``, ``paid_at``, ``gateway_txn_id``; ``receipt`` and
    ``receipt_json``: the row of :func:`notices.receipts.signed_receipt` and the canonical bytes
    it signed, stored as the payload's JSON text (the same document, encoded once); ``event``:
    the row of :func:`notices.events.event_row`; ``notification``: the
    ``gateway_notifications`` row."""
    params = prepared.pg_params()
    params.update(
        attempt_id=attempt_id,
        notice_id=notice_id,
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
    rows = pg_execute(session, SETTLE_SQL, params)
    if not rows:
        return None
    entry_id, receipt_id, event_id, attempt, notice = rows[0]
    if (attempt, notice) != (attempt_id, notice_id):  # both locked by the caller: cannot happen
        raise RuntimeError(
            f"settling attempt {attempt_id} of notice {notice_id} updated {attempt} and {notice}"
        )
    return Settled(entry_id, receipt_id, event_id)
