"""Matching: a gateway bill's lines against our records, and bank credits against settlements.

PURE: no I/O, no database, no clock. Amounts are signed integer fen from the platform's point of
view (a payment +, a refund -), as in :class:`~reconciliation.lines.StatementLine`.

Transaction level (:func:`classify`) is a streaming merge-join on a *match key*: ``P:<order id>``
for payments and ``R:<refund id>`` for refunds. Both inputs are consumed in key order (Python
``str`` order, which is PostgreSQL's ``COLLATE "C"`` order), so memory is bounded by the largest
key group and time is linear. Every line and every record of the run's day lands in exactly one
:class:`Outcome`; the rules, in order, for a key group (lines sorted by line number, the first is
the *primary* line, the others are ``duplicate``):

1. ``cutoff``: the primary line's booked date is not the run's business date (it belongs to
   another day's run), or our capture/refund is booked on another business date than the line.
2. ``missing_internal``: the line has no record (paid at the gateway, no capture on our side).
3. ``amount_mismatch``: the amounts differ.
4. ``fee_mismatch``: the fee differs from the expected fee (:func:`expected_fee`).
5. ``matched``.

A record with no line is ``missing_external`` when it is on the run's day; records of the
neighbouring days (which the shell passes so that rule 1 can see them) yield nothing unless a line
names them.

Fees (the simulators' rule, ``gateways/simulators/common.py``): a payment's fee is
``round_half_up(amount * rate)``; a refund returns the fee in proportion to the *cumulative*
amount refunded: ``round_half_up(fee * refunded_after / amount) - round_half_up(fee *
refunded_before / amount)``, so a full refund (in one or many parts) returns the whole fee and no
fen is lost to rounding. Returned fees are negative.

Cash level (:func:`settle`): the expected net settlement of a gateway and day is payments -
refunds - fees per its bill; a bank credit whose reference names the gateway and date equal to it
is ``settled``, otherwise ``shortfall`` / ``excess``; a credit nothing explains is
``unexplained_credit``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby

from reconciliation.lines import LineKind, StatementLine

MATCHED = "matched"
MISSING_INTERNAL = "missing_internal"
MISSING_EXTERNAL = "missing_external"
AMOUNT_MISMATCH = "amount_mismatch"
DUPLICATE = "duplicate"
FEE_MISMATCH = "fee_mismatch"
CUTOFF = "cutoff"
EXCEPTIONS = (MISSING_INTERNAL, MISSING_EXTERNAL, AMOUNT_MISMATCH, DUPLICATE, FEE_MISMATCH, CUTOFF)


@dataclass(frozen=True, slots=True)
class OurRecord:
    """A captured payment or a succeeded refund, as the ledger knows it.

    ``amount`` is signed fen (payments +, refunds -); ``business_date`` is the business date of
    its journal entry. For refunds, ``order_amount`` and ``refunded_before`` (fen refunded on the
    order by earlier refunds) give the expected returned fee."""

    kind: str
    """``payment`` or ``refund``."""
    ref: str
    """Order id for a payment, refund id for a refund."""
    order_id: str
    amount: int
    business_date: date
    gateway_txn_id: str | None = None
    order_amount: int = 0
    refunded_before: int = 0

    @property
    def key(self) -> str:
        return ("P:" if self.kind == LineKind.PAYMENT else "R:") + self.ref


@dataclass(frozen=True, slots=True)
class Outcome:
    """One line's (or one unmatched record's) outcome."""

    outcome: str
    kind: str
    order_id: str | None
    external_id: str | None
    amount: int
    """Signed fen as the file says (for ``missing_external``: as our record says)."""
    line_no: int | None = None
    expected_amount: int | None = None
    fee: int = 0
    expected_fee: int | None = None
    detail: str = ""
    key: str = ""

    @property
    def is_exception(self) -> bool:
        return self.outcome != MATCHED


def line_key(line: StatementLine) -> str:
    """``R:<refund id>`` for refunds (or ``R:`` + external id if the file lacks it), else
    ``P:<order id>`` (or ``P:`` + external id)."""
    if line.kind == LineKind.REFUND:
        return "R:" + (line.refund_id or line.external_id)
    return "P:" + (line.order_id or line.external_id)


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def payment_fee(amount: int, rate: Decimal) -> int:
    """Fee charged on a payment of ``amount`` fen: ``round_half_up(amount * rate)``."""
    return round_half_up(Decimal(amount) * rate)


def expected_fee(record: OurRecord, rate: Decimal) -> int:
    """The fee the bill should show for ``record`` (positive charged, negative returned)."""
    if record.kind == LineKind.PAYMENT:
        return payment_fee(record.amount, rate)
    order_amount = record.order_amount or -record.amount
    total = payment_fee(order_amount, rate)
    after = record.refunded_before - record.amount  # refunds are negative
    upto = round_half_up(Decimal(total * after) / Decimal(order_amount))
    done = round_half_up(Decimal(total * record.refunded_before) / Decimal(order_amount))
    return -(upto - done)


def classify(
    lines: Iterable[StatementLine],
    records: Iterable[OurRecord],
    *,
    business_date: date,
    fee_rate: Decimal,
    presorted: bool = False,
) -> Iterator[Outcome]:
    """Classify every line and every record of ``business_date`` into exactly one outcome.

    With ``presorted=True`` both inputs must already be in key order (:func:`line_key`,
    :attr:`OurRecord.key`; lines of a key by line number): they are then streamed in bounded
    memory. Otherwise they are sorted here first (small inputs, tests)."""
    if not presorted:
        lines = sorted(lines, key=lambda ln: (line_key(ln), ln.line_no))
        records = sorted(records, key=lambda r: r.key)
    line_groups = groupby(lines, key=line_key)
    record_groups = groupby(records, key=lambda r: r.key)
    lk, lg = _next(line_groups)
    rk, rg = _next(record_groups)
    while lk is not None or rk is not None:
        if rk is None or (lk is not None and lk < rk):
            yield from _group(lk, list(lg), [], business_date, fee_rate)  # type: ignore[arg-type]
            lk, lg = _next(line_groups)
        elif lk is None or rk < lk:
            yield from _group(rk, [], list(rg), business_date, fee_rate)  # type: ignore[arg-type]
            rk, rg = _next(record_groups)
        else:
            yield from _group(lk, list(lg), list(rg), business_date, fee_rate)  # type: ignore[arg-type]
            lk, lg = _next(line_groups)
            rk, rg = _next(record_groups)


def _next(groups):  # type: ignore[no-untyped-def]
    return next(groups, (None, None))


def _group(
    key: str, lines: list[StatementLine], records: list[OurRecord], day: date, rate: Decimal
) -> Iterator[Outcome]:
    record = records[0] if records else None
    for extra in records[1:]:  # a key is unique on our side; never drop one all the same
        yield _record_outcome(extra, key, DUPLICATE, "our record repeats a key")
    if not lines:
        if record is not None and record.business_date == day:
            yield _record_outcome(record, key, MISSING_EXTERNAL, "captured by us; not in the bill")
        return
    primary, *rest = sorted(lines, key=lambda ln: ln.line_no)
    yield _line_outcome(primary, record, key, day, rate)
    for dup in rest:
        yield _from_line(
            dup, key, DUPLICATE, record, f"repeats line {primary.line_no} ({key[2:]})", rate
        )


def _line_outcome(
    line: StatementLine, record: OurRecord | None, key: str, day: date, rate: Decimal
) -> Outcome:
    if line.booked_on != day:
        return _from_line(
            line,
            key,
            CUTOFF,
            record,
            f"booked on {line.booked_on.isoformat()}, not {day.isoformat()}",
            rate,
        )
    if record is None:
        return _from_line(
            line, key, MISSING_INTERNAL, None, "paid at the gateway; no capture", rate
        )
    if record.business_date != day:
        return _from_line(
            line, key, CUTOFF, record, f"we booked it on {record.business_date.isoformat()}", rate
        )
    if line.amount_fen != record.amount:
        return _from_line(
            line,
            key,
            AMOUNT_MISMATCH,
            record,
            f"bill {line.amount_fen} fen, ours {record.amount} fen",
            rate,
        )
    want = expected_fee(record, rate)
    if line.fee_fen != want:
        return _from_line(
            line,
            key,
            FEE_MISMATCH,
            record,
            f"fee {line.fee_fen} fen, expected {want} fen at rate {rate}",
            rate,
        )
    return _from_line(line, key, MATCHED, record, "", rate)


def _from_line(
    line: StatementLine,
    key: str,
    outcome: str,
    record: OurRecord | None,
    detail: str,
    rate: Decimal,
) -> Outcome:
    return Outcome(
        outcome=outcome,
        kind=str(line.kind),
        order_id=line.order_id,
        external_id=line.external_id,
        amount=line.amount_fen,
        line_no=line.line_no,
        expected_amount=record.amount if record else None,
        fee=line.fee_fen,
        expected_fee=expected_fee(record, rate) if record else None,
        detail=detail,
        key=key,
    )


def _record_outcome(record: OurRecord, key: str, outcome: str, detail: str) -> Outcome:
    return Outcome(
        outcome=outcome,
        kind=record.kind,
        order_id=record.order_id,
        external_id=record.gateway_txn_id,
        amount=record.amount,
        expected_amount=record.amount,
        detail=detail,
        key=key,
    )


# cash level ---------------------------------------------------------------------------------

SETTLEMENT_REF = re.compile(r"\bSETTLE (ALIPAY|WECHATPAY|UNIONPAY) ([0-9]{8})\b")


@dataclass(frozen=True, slots=True)
class BillSummary:
    """What a gateway's bill for one day says it will pay: fen."""

    gateway: str
    business_date: date
    payments: int
    """Sum of payment lines (positive)."""
    refunds: int
    """Sum of refund lines, as a positive number."""
    fees: int
    """Net fees (charged minus returned)."""

    @property
    def gross(self) -> int:
        return self.payments - self.refunds

    @property
    def net(self) -> int:
        return self.gross - self.fees


@dataclass(frozen=True, slots=True)
class CashOutcome:
    outcome: str
    """``settled``, ``shortfall``, ``excess``, ``unexplained_credit`` or ``other``."""
    amount: int
    """The bank line's signed fen."""
    gateway: str | None = None
    business_date: date | None = None
    expected: int | None = None
    detail: str = ""


def settlement_target(reference: str) -> tuple[str, date] | None:
    """(gateway, date) named by a ``SETTLE <GW> <YYYYMMDD>`` reference, else None."""
    found = SETTLEMENT_REF.search(reference.upper())
    if not found:
        return None
    raw = found.group(2)
    try:
        return found.group(1).lower(), date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        return None


def settle(
    bill_summary: BillSummary | Sequence[BillSummary] | None, bank_line: StatementLine
) -> CashOutcome:
    """Classify one bank line against the bill summaries it may settle."""
    summaries = (
        [bill_summary] if isinstance(bill_summary, BillSummary) else list(bill_summary or [])
    )
    target = settlement_target(bank_line.reference)
    if bank_line.amount_fen <= 0 or bank_line.reversal:
        return CashOutcome("other", bank_line.amount_fen, detail="not a credit")
    if target is None:
        return CashOutcome(
            "unexplained_credit", bank_line.amount_fen, detail="no settlement reference"
        )
    gateway, day = target
    summary = next((s for s in summaries if (s.gateway, s.business_date) == target), None)
    if summary is None:
        return CashOutcome(
            "unexplained_credit",
            bank_line.amount_fen,
            gateway,
            day,
            detail=f"no reconciled {gateway} bill for {day.isoformat()}",
        )
    diff = bank_line.amount_fen - summary.net
    outcome = "settled" if diff == 0 else ("shortfall" if diff < 0 else "excess")
    detail = "" if diff == 0 else f"expected {summary.net} fen, credited {bank_line.amount_fen}"
    return CashOutcome(outcome, bank_line.amount_fen, gateway, day, summary.net, detail)


def settle_all(
    summaries: Sequence[BillSummary], bank_lines: Iterable[StatementLine]
) -> Iterator[CashOutcome]:
    """:func:`settle` for each bank line."""
    for line in bank_lines:
        yield settle(summaries, line)


def summarize(gateway: str, day: date, lines: Iterable[StatementLine]) -> BillSummary:
    """The bill summary of a file: every line counts, cut-off lines too (the gateway settles the
    file it sent)."""
    payments = refunds = fees = 0
    for line in lines:
        if line.kind == LineKind.PAYMENT:
            payments += line.amount_fen
        elif line.kind == LineKind.REFUND:
            refunds -= line.amount_fen
        fees += line.fee_fen
    return BillSummary(gateway, day, payments, refunds, fees)
