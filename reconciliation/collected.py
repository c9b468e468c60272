"""What was collected on a business day, line by line: each captured attempt split over its
notice's items and each item over its treasuries, exactly as the capture entry split it.

The split repeats :func:`clearing.payments.capture.treasury_credits` per item (the late fee
spread over the items by amount, then each item by its shares, both largest-remainder), so the
parts of one capture add up, per treasury, to the capture entry's ``treasury_payable`` credits;
:func:`collected_lines` checks that they do. Amounts are integer fen.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.errors import Conflict
from clearing.ledger.models import JournalEntry
from clearing.payments.models import PaymentAttempt
from clearing.split import allocate, split_amount
from notices.models import Notice, NoticeItem

CAPTURED = ("succeeded", "duplicate")
DUPLICATE_ACCOUNT = "refunds_payable"


@dataclass(frozen=True)
class CollectedLine:
    """One item of one captured payment, for one treasury (or refunds_payable for a duplicate)."""

    order_id: str
    attempt_state: str
    gateway: str
    channel: str
    department: str
    item_code: str
    item_name: str
    revenue_code: str
    budget_level: str
    treasury: str
    """The treasury account's qualifier (``510100-city``), or ``refunds_payable``."""
    amount: int
    """Fen."""


def item_splits(notice: Notice, late_fee: int) -> list[tuple[NoticeItem, dict[str, int]]]:
    """Each item with its fen per treasury (item amount plus its part of the late fee)."""
    items = {str(item.line_no): item for item in notice.items}
    fee_parts = allocate(late_fee, {k: i.amount for k, i in items.items()}) if late_fee else {}
    return [
        (item, split_amount(item.amount + fee_parts.get(key, 0), item.shares))
        for key, item in items.items()
    ]


def captures_on(
    session: Session,
    day: date,
    *,
    states: tuple[str, ...] = CAPTURED,
    gateways: set[str] | None = None,
) -> list[tuple[PaymentAttempt, JournalEntry]]:
    """Attempts captured (their capture entry's business date) on ``day``, by order id."""
    query = (
        select(PaymentAttempt, JournalEntry)
        .join(JournalEntry, JournalEntry.id == PaymentAttempt.journal_entry_id)
        .where(JournalEntry.business_date == day, PaymentAttempt.state.in_(states))
        .order_by(PaymentAttempt.order_id)
    )
    if gateways is not None:
        query = query.where(PaymentAttempt.gateway.in_(sorted(gateways)))
    return [(a, e) for a, e in session.execute(query)]


def collected_lines(
    session: Session,
    day: date,
    *,
    states: tuple[str, ...] = CAPTURED,
    gateways: set[str] | None = None,
) -> list[CollectedLine]:
    """Every captured payment of ``day`` as item x treasury lines (see the module docstring)."""
    captures = captures_on(session, day, states=states, gateways=gateways)
    notices = _notices(session, {a.notice_id for a, _ in captures})
    out: list[CollectedLine] = []
    for attempt, entry in captures:
        notice = notices[attempt.notice_id]
        lines = _lines(attempt, notice, notice.department.name)
        _check_against_entry(attempt, entry, lines)
        out += lines
    return out


def _notices(session: Session, ids: set[int], chunk: int = 500) -> dict[int, Notice]:
    """Notices with their items and department, loaded in chunks (not one query each)."""
    ordered, out = sorted(ids), {}
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        out.update({n.id: n for n in session.scalars(select(Notice).where(Notice.id.in_(part)))})
    return out


def _lines(attempt: PaymentAttempt, notice: Notice, department: str) -> list[CollectedLine]:
    lines = []
    for item, parts in item_splits(notice, attempt.late_fee):
        if attempt.state == "duplicate":  # the money is owed back to the payer, not a treasury
            parts = {DUPLICATE_ACCOUNT: sum(parts.values())}
        for treasury, fen in parts.items():
            if fen:
                lines.append(
                    CollectedLine(
                        attempt.order_id,
                        attempt.state,
                        attempt.gateway,
                        attempt.channel,
                        department,
                        item.item_code,
                        item.name_zh,
                        item.revenue_code,
                        item.budget_level,
                        treasury,
                        fen,
                    )
                )
    return lines


def _check_against_entry(
    attempt: PaymentAttempt, entry: JournalEntry, lines: list[CollectedLine]
) -> None:
    ours: dict[str, int] = defaultdict(int)
    for line in lines:
        code = (
            line.treasury
            if line.treasury == DUPLICATE_ACCOUNT
            else f"treasury_payable:{line.treasury}"
        )
        ours[code] += line.amount
    posted: dict[str, int] = defaultdict(int)
    for p in entry.postings:
        if p.direction == "C":
            posted[p.account.code] += p.amount
    if dict(ours) != dict(posted):
        raise Conflict(
            f"capture {attempt.order_id}: the items split as {dict(ours)} but the "
            f"capture entry {entry.id} credits {dict(posted)}"
        )


def daily_totals(session: Session, first: date, last: date) -> dict[date, tuple[int, int]]:
    """Day -> (payments, fen) captured, for every day from ``first`` to ``last`` (0 if none)."""
    from sqlalchemy import func

    rows = session.execute(
        select(JournalEntry.business_date, func.count(), func.sum(PaymentAttempt.amount))
        .join(JournalEntry, JournalEntry.id == PaymentAttempt.journal_entry_id)
        .where(JournalEntry.business_date.between(first, last), PaymentAttempt.state.in_(CAPTURED))
        .group_by(JournalEntry.business_date)
    )
    found = {d: (int(n), int(s or 0)) for d, n, s in rows}
    days = (last - first).days + 1
    return {
        d: found.get(d, (0, 0)) for d in (first + timedelta(days=i) for i in range(max(days, 0)))
    }
