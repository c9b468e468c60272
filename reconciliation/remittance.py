"""Daily remittance of collected money to the treasuries (Dr treasury_payable / Cr fiscal_bank).

**Settled** (what a day's remittance covers): payments *captured* on the business date D (the
capture entry's business date; attempt state ``succeeded``; duplicates are owed back to payers
and never remitted) through a gateway whose settlement entry for D is posted in the journal
(idempotency key ``settle:<gateway>:<YYYYMMDD>``, as ``reconciliation.service`` posts it
when the bank statement shows the gateway's settlement credit; a re-posted, corrected
settlement counts, a reversed one does not). Money of a
gateway that has not settled D yet stays in ``treasury_payable`` for a later remittance.

One :class:`Remittance` per treasury and day, with a voucher of lines by revenue classification
code (政府收支分类科目) and budget level, split from the notice items exactly as the capture
split them (every fen conserved; :mod:`reconciliation.collected`). Preparing posts
``remit:<treasury>:<D>``. States: ``prepared -> sent -> confirmed``, nothing else.

**Top-ups.** A gateway may settle D after D was remitted (its bank credit arrives a day late, a
corrected bill re-posts it). Preparing D again then adds a *top-up* batch, ``sequence`` 2, 3,
..., posted as ``remit:<treasury>:<D>:<sequence>``, for what is settled now and not covered by
the earlier batches, line by line (a line's coverage is what it remitted plus what its cap held
back for refunds). Preparing again with nothing new is idempotent: the existing batches are
returned unchanged, never recomputed. ``unsettled_gateways`` tells which gateways of D have not
settled yet, i.e. which days to prepare again later.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clearing.errors import Conflict, NotFound, ValidationError
from clearing.ledger.core import Entry, Posting
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.split import allocate
from reconciliation.collected import CollectedLine, captures_on, collected_lines
from reconciliation.models import Remittance
from reconciliation.reports.safety import safe_text

NEXT_STATE = {"sent": "prepared", "confirmed": "sent"}
"""Target state -> the only state it can be reached from."""


@dataclass(frozen=True)
class Prepared:
    remittance: Remittance
    created: bool


def settlement_entries(session: Session, day: date) -> dict[str, JournalEntry]:
    """Gateway -> its live (not reversed) settlement entry for ``day``: key
    ``settle:<gateway>:<YYYYMMDD>``, or that key with a suffix when a corrected bill re-posted
    it (``reconciliation.service``)."""
    stamps = (f"{day:%Y%m%d}", day.isoformat())
    patterns = [f"settle:%:{d}" for d in stamps] + [f"settle:%:{d}:%" for d in stamps]
    reversed_ids = select(JournalEntry.reverses_id).where(JournalEntry.reverses_id.is_not(None))
    rows = session.scalars(
        select(JournalEntry)
        .where(
            or_(*(JournalEntry.idempotency_key.like(p) for p in patterns)),
            JournalEntry.reverses_id.is_(None),
            JournalEntry.id.not_in(reversed_ids),
        )
        .order_by(JournalEntry.id)
    )
    out = {}
    for row in rows:
        parts = row.idempotency_key.split(":")
        if len(parts) in (3, 4) and parts[2] in stamps:
            out[parts[1]] = row
    return out


def _fiscal_account(settlements: dict[str, JournalEntry], given: str | None) -> str:
    if given:
        if not given.startswith("fiscal_bank:") or given == "fiscal_bank:":
            raise ValidationError(
                "fiscal_account must be fiscal_bank:<account>", field="fiscal_account"
            )
        return given
    debited = {
        p.account.code
        for e in settlements.values()
        for p in e.postings
        if p.direction == "D" and p.account.code.startswith("fiscal_bank:")
    }
    if len(debited) != 1:
        raise ValidationError(
            "name the fiscal account to remit from: the settlements of the "
            f"day credit {sorted(debited) or 'no fiscal account'}",
            field="fiscal_account",
        )
    return debited.pop()


def voucher_lines(lines: list[CollectedLine]) -> dict[str, list[dict[str, Any]]]:
    """Treasury -> voucher lines ``{revenue_code, budget_level, amount (fen), payments}``."""
    sums: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    orders: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    for line in lines:
        key = (line.revenue_code, line.budget_level)
        sums[line.treasury][key] += line.amount
        orders[line.treasury][key].add(line.order_id)
    return {
        t: [
            {
                "revenue_code": rc,
                "budget_level": bl,
                "amount": fen,
                "payments": len(orders[t][(rc, bl)]),
            }
            for (rc, bl), fen in sorted(by_key.items())
        ]
        for t, by_key in sorted(sums.items())
    }


def unsettled_gateways(session: Session, day: date, settled: set[str]) -> list[str]:
    """Gateways with captures on ``day`` whose settlement for ``day`` is not posted (yet)."""
    return sorted(
        {a.gateway for a, _ in captures_on(session, day, states=("succeeded",))} - settled
    )


def prepare(
    session: Session, day: date, username: str, *, fiscal_account: str | None = None
) -> list[Prepared]:
    """Prepare the remittances of what was settled on ``day``: per treasury, the day's batch,
    or a top-up for what settled since; the existing batches come back with ``created`` False."""
    settlements = settlement_entries(session, day)
    lines = collected_lines(session, day, states=("succeeded",), gateways=set(settlements))
    vouchers = voucher_lines(lines)
    if not vouchers:
        return []
    account: str | None = None
    out: list[Prepared] = []
    for treasury, voucher in vouchers.items():
        batches = _batches(session, treasury, day)
        out += [Prepared(b, False) for b in batches]
        rest = _uncovered(voucher, batches)
        if not rest:
            continue
        account = account or _fiscal_account(settlements, fiscal_account)
        sequence = batches[-1].sequence + 1 if batches else 1
        made = _prepare_batch(session, day, treasury, sequence, rest, account, username)
        if made is not None:
            out.append(made)
    return out


def _uncovered(voucher: list[dict[str, Any]], batches: list[Remittance]) -> list[dict[str, Any]]:
    """The voucher's lines less what earlier batches of the day covered (only what is left)."""
    covered: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for batch in batches:
        for line in batch.voucher:
            key = (line["revenue_code"], line["budget_level"])
            covered[key][0] += line["amount"] + line.get("refunded", 0)
            covered[key][1] += line["payments"]
    rest = []
    for line in voucher:
        fen, payments = covered.get((line["revenue_code"], line["budget_level"]), (0, 0))
        if line["amount"] > fen:
            rest.append(
                {
                    **line,
                    "amount": line["amount"] - fen,
                    "payments": max(line["payments"] - payments, 0),
                }
            )
    return rest


def _cap(voucher: list[dict[str, Any]], owed: int) -> list[dict[str, Any]]:
    """Never remit more than the treasury is owed now: refunds already paid back out of what it
    collected reduce the voucher, in proportion to its lines (every fen accounted for)."""
    collected = sum(line["amount"] for line in voucher)
    if owed >= collected:
        return voucher
    keep = allocate(max(owed, 0), {str(i): line["amount"] for i, line in enumerate(voucher)})
    return [
        {**line, "amount": keep[str(i)], "refunded": line["amount"] - keep[str(i)]}
        for i, line in enumerate(voucher)
    ]


def _batches(session: Session, treasury: str, day: date) -> list[Remittance]:
    return list(
        session.scalars(
            select(Remittance)
            .where(Remittance.treasury == treasury, Remittance.business_date == day)
            .order_by(Remittance.sequence)
        )
    )


def _prepare_batch(
    session: Session,
    day: date,
    treasury: str,
    sequence: int,
    voucher: list[dict[str, Any]],
    account: str,
    username: str,
) -> Prepared | None:
    voucher = _cap(voucher, LedgerService(session).balance(f"treasury_payable:{treasury}"))
    amount = sum(line["amount"] for line in voucher)
    if amount <= 0:
        return None
    batch = f"{treasury}:{day.isoformat()}" + (f":{sequence}" if sequence > 1 else "")
    posted = LedgerService(session).post(
        Entry(
            idempotency_key=f"remit:{batch}",
            business_date=day,
            description=f"Remittance to treasury {treasury} of {day.isoformat()}"
            + (f" (top-up {sequence})" if sequence > 1 else ""),
            postings=(
                Posting.debit(f"treasury_payable:{treasury}", amount),
                Posting.credit(account, amount),
            ),
            metadata={"treasury": treasury, "lines": len(voucher), "sequence": sequence},
            ref_type="remittance",
            ref_id=batch,
        )
    )
    now = datetime.now(UTC)
    row = Remittance(
        treasury=treasury,
        business_date=day,
        sequence=sequence,
        amount=amount,
        state="prepared",
        voucher=voucher,
        journal_entry_id=posted.id,
        prepared_by=username,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # prepared concurrently: theirs stands (the entry was the same)
        existing = [b for b in _batches(session, treasury, day) if b.sequence == sequence]
        assert existing, "the unique key refused the batch, so it exists"
        return Prepared(existing[0], False)
    return Prepared(row, True)


def get(session: Session, remittance_id: int, *, lock: bool = False) -> Remittance:
    query = select(Remittance).where(Remittance.id == remittance_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"remittance {remittance_id} does not exist")
    return row


def list_remittances(
    session: Session,
    *,
    business_date: date | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[Remittance]:
    query = select(Remittance).order_by(Remittance.business_date.desc(), Remittance.treasury)
    if business_date is not None:
        query = query.where(Remittance.business_date == business_date)
    if state is not None:
        query = query.where(Remittance.state == state)
    return list(session.scalars(query.limit(limit)))


def advance(session: Session, remittance_id: int, target: str) -> Remittance:
    """Move to ``sent`` or ``confirmed``; repeating the current state is a no-op."""
    row = get(session, remittance_id, lock=True)
    if row.state == target:
        return row
    if NEXT_STATE.get(target) != row.state:
        raise Conflict(f"remittance {remittance_id} is {row.state}; it cannot become {target}")
    row.state, row.updated_at = target, datetime.now(UTC)
    session.flush()
    return row


def voucher_csv(row: Remittance) -> str:
    """The remittance voucher file: one line per revenue code and budget level, then the total.

    Columns: treasury, business_date, revenue_code, budget_level, amount (yuan), payments.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        ["treasury", "business_date", "revenue_code", "budget_level", "amount", "payments"]
    )
    for line in row.voucher:
        writer.writerow(
            [
                safe_text(row.treasury),
                row.business_date.isoformat(),
                safe_text(line["revenue_code"]),
                safe_text(line["budget_level"]),
                format_fen(line["amount"]),
                line["payments"],
            ]
        )
    total = sum(line["amount"] for line in row.voucher)
    assert total == row.amount, "a voucher always adds up to its remittance"
    writer.writerow(
        [safe_text(row.treasury), row.business_date.isoformat(), "TOTAL", "", format_fen(total), ""]
    )
    return out.getvalue()
