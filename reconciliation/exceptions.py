"""Clearing reconciliation exceptions under four eyes.

An exception (an item whose ``exception_state`` is not NULL) is ``open``. One officer
*proposes* a resolution: an adjusting entry (balanced postings and a reason), or an explanation
alone (no postings). A *different* officer approves it: the entry, if any, is posted with the
idempotency key ``adjust:<item id>`` and the item becomes ``resolved`` with the note. Either
officer may instead reject the proposal, which sends the item back to ``open``. Nobody ever
approves their own proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.errors import Conflict, Forbidden, NotFound, ValidationError
from clearing.ledger.chart import classify
from clearing.ledger.core import Direction, Entry, Posting
from clearing.ledger.service import LedgerService
from clearing.money import format_fen, parse_fen
from reconciliation.models import ReconciliationItem, ReconciliationRun


class SelfApproval(Forbidden):
    type = "four-eyes"


@dataclass(frozen=True)
class ProposedPosting:
    """One leg as typed by an officer: ``amount`` in yuan text ("12.30"), parsed strictly."""

    account: str
    direction: str
    """``debit`` or ``credit``."""
    amount: str


def _lock_item(session: Session, item_id: int) -> ReconciliationItem:
    item = session.scalars(
        select(ReconciliationItem).where(ReconciliationItem.id == item_id).with_for_update()
    ).one_or_none()
    if item is None:
        raise NotFound(f"reconciliation item {item_id} does not exist")
    return item


def _postings(legs: list[ProposedPosting]) -> tuple[Posting, ...]:
    out = []
    for i, leg in enumerate(legs):
        classify(leg.account)
        if leg.direction not in ("debit", "credit"):
            raise ValidationError(
                "direction must be debit or credit", field=f"postings.{i}.direction"
            )
        fen = parse_fen(leg.amount, field=f"postings.{i}.amount")
        out.append(
            Posting(
                leg.account, Direction.DEBIT if leg.direction == "debit" else Direction.CREDIT, fen
            )
        )
    return tuple(out)


def _entry(item: ReconciliationItem, proposal: dict[str, Any]) -> Entry:
    return Entry(
        idempotency_key=f"adjust:{item.id}",
        business_date=date.fromisoformat(proposal["business_date"]),
        description=f"Adjustment for reconciliation item {item.id}: {proposal['reason']}"[:500],
        postings=tuple(
            Posting(p["account"], Direction(p["direction"]), p["amount"])
            for p in proposal["postings"]
        ),
        metadata={
            "reconciliation_item_id": item.id,
            "run_id": item.run_id,
            "proposed_by": proposal["proposed_by"],
        },
        ref_type="reconciliation_item",
        ref_id=str(item.id),
    )


def propose(
    session: Session,
    item_id: int,
    username: str,
    *,
    reason: str,
    postings: list[ProposedPosting],
    business_date: date | None = None,
) -> ReconciliationItem:
    """Propose an adjusting entry (``postings``) or, with none, an explanation."""
    item = _lock_item(session, item_id)
    if item.exception_state != "open":
        raise Conflict(
            f"item {item_id} is {item.exception_state or 'not an exception'}; "
            "only open exceptions take a proposal"
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("a reason is required", field="reason")
    run = session.get(ReconciliationRun, item.run_id)
    assert run is not None
    legs = _postings(postings) if postings else ()
    proposal = {
        "reason": reason[:400],
        "proposed_by": username,
        "business_date": (business_date or run.business_date).isoformat(),
        "postings": [
            {"account": p.account, "direction": p.direction.value, "amount": p.amount} for p in legs
        ],
    }
    if legs:
        _entry(item, proposal)  # validates: balanced, 2+ legs
    item.exception_state, item.proposal, item.proposed_by = "proposed", proposal, username
    session.flush()
    return item


def approve(
    session: Session, item_id: int, username: str, note: str | None = None
) -> ReconciliationItem:
    """Approve another officer's proposal: post its entry (once) and resolve the item."""
    item = _proposed(session, item_id)
    if item.proposed_by == username:
        raise SelfApproval("four eyes: a proposal must be approved by another officer")
    assert item.proposal is not None
    if item.proposal["postings"]:
        item.journal_entry_id = LedgerService(session).post(_entry(item, item.proposal)).id
    item.exception_state, item.resolved_by = "resolved", username
    item.resolution_note = ((note or "").strip() or item.proposal["reason"])[:500]
    item.resolved_at = datetime.now(UTC)
    session.flush()
    return item


def reject(
    session: Session, item_id: int, username: str, note: str | None = None
) -> ReconciliationItem:
    """Send a proposal back: the item is open again (the rejected proposal is forgotten)."""
    item = _proposed(session, item_id)
    item.exception_state, item.proposal, item.proposed_by = "open", None, None
    item.resolution_note = f"rejected by {username}: {(note or '').strip()}"[:500]
    session.flush()
    return item


def _proposed(session: Session, item_id: int) -> ReconciliationItem:
    item = _lock_item(session, item_id)
    if item.exception_state != "proposed":
        raise Conflict(
            f"item {item_id} is {item.exception_state or 'not an exception'}, not proposed"
        )
    return item


def describe_proposal(proposal: dict[str, Any] | None) -> dict[str, Any] | None:
    """The proposal for display: amounts in yuan."""
    if proposal is None:
        return None
    return {
        **proposal,
        "postings": [
            {
                "account": p["account"],
                "direction": "debit" if p["direction"] == "D" else "credit",
                "amount": format_fen(p["amount"]),
            }
            for p in proposal["postings"]
        ],
    }
