"""The pure matcher: one example per outcome, and properties over generated days."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.simulators.common import Order, Refund, fee_fen, returned_fees
from reconciliation.lines import LineKind, StatementLine
from reconciliation.matching import (
    BillSummary,
    OurRecord,
    classify,
    expected_fee,
    settle,
    summarize,
)

DAY = date(2026, 11, 27)
RATE = Decimal("0.006")


def line(
    order: str,
    amount: int,
    *,
    n: int = 1,
    fee: int | None = None,
    on: date = DAY,
    kind: LineKind = LineKind.PAYMENT,
    refund_id: str | None = None,
    ref: str = "",
) -> StatementLine:
    if fee is None:
        fee = fee_fen(amount, RATE) if kind == LineKind.PAYMENT else -fee_fen(-amount, RATE)
    return StatementLine(
        "alipay",
        n,
        f"T{order}{refund_id or ''}",
        order,
        amount,
        fee,
        "CNY",
        on,
        None,
        kind,
        ref,
        refund_id=refund_id,
    )


def pay(order: str, amount: int, on: date = DAY) -> OurRecord:
    return OurRecord("payment", order, order, amount, on, f"T{order}")


def run(lines, records, day=DAY):
    return list(classify(lines, records, business_date=day, fee_rate=RATE))


def outcomes(lines, records):
    return {(o.outcome, o.order_id, o.line_no) for o in run(lines, records)}


def test_each_outcome():
    lines = [
        line("A", 26000, n=1),
        line("B", 100, n=2),
        line("C", 500, n=3, fee=9),
        line("D", 700, n=4),
        line("D", 700, n=5),
        line("E", 800, n=6, on=DAY + timedelta(1)),
        line("G", 900, n=7),
    ]
    records = [
        pay("A", 26000),
        pay("B", 120),
        pay("C", 500),
        pay("D", 700),
        pay("E", 800),
        pay("F", 300),
        pay("G", 900, DAY - timedelta(1)),
    ]
    assert outcomes(lines, records) == {
        ("matched", "A", 1),
        ("amount_mismatch", "B", 2),
        ("fee_mismatch", "C", 3),
        ("matched", "D", 4),
        ("duplicate", "D", 5),
        ("cutoff", "E", 6),
        ("missing_external", "F", None),
        ("cutoff", "G", 7),
    }
    assert outcomes([line("H", 100)], []) == {("missing_internal", "H", 1)}


def test_neighbour_day_records_without_lines_yield_nothing():
    assert run([], [pay("X", 100, DAY - timedelta(1)), pay("Y", 100, DAY + timedelta(1))]) == []


def test_refund_fees_follow_the_simulators_cumulative_rule():
    order = Order("P1", 3333, "s", "", "", created_at=None)  # type: ignore[arg-type]
    refunds = [
        Refund(f"R{i}", "P1", amt, f"G{i}", None)  # type: ignore[arg-type]
        for i, amt in enumerate([1000, 1111, 1222])
    ]
    returned = returned_fees(order, RATE, refunds)
    before = 0
    for r in refunds:
        rec = OurRecord("refund", r.refund_id, "P1", -r.amount_fen, DAY, None, 3333, before)
        assert expected_fee(rec, RATE) == -returned[r.refund_id]
        before += r.amount_fen
    assert sum(returned.values()) == fee_fen(3333, RATE)


def test_refund_line_matches_refund_record():
    refund = line("P1", -26000, kind=LineKind.REFUND, refund_id="R1")
    rec = OurRecord("refund", "R1", "P1", -26000, DAY, None, 26000, 0)
    assert outcomes([refund], [rec]) == {("matched", "P1", 1)}


def test_settle():
    summary = BillSummary("alipay", DAY, 26000, 1000, 150)
    credit = line("S", 24850, kind=LineKind.SETTLEMENT, ref="SETTLE ALIPAY 20261127")
    assert settle(summary, credit).outcome == "settled"
    short = line("S", 24000, kind=LineKind.SETTLEMENT, ref="SETTLE ALIPAY 20261127")
    assert settle(summary, short).outcome == "shortfall"
    assert settle(summary, line("S", 99999, ref="SETTLE ALIPAY 20261127")).outcome == "excess"
    assert settle(summary, line("S", 500, ref="TRANSFER")).outcome == "unexplained_credit"
    other_day = line("S", 24850, ref="SETTLE ALIPAY 20261126")
    assert settle(summary, other_day).outcome == "unexplained_credit"
    assert settle(summary, line("S", -500, ref="FEE")).outcome == "other"


def test_summarize():
    lines = [line("A", 26000), line("A", -26000, kind=LineKind.REFUND, refund_id="R1")]
    s = summarize("alipay", DAY, lines)
    assert (s.payments, s.refunds, s.fees, s.net) == (26000, 26000, 0, 0)


# properties ---------------------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=10_000_000)
orders = st.lists(
    st.tuples(
        st.sampled_from("ABCDEFGHIJ"),
        amounts,
        st.sampled_from(["ok", "amount", "fee", "dup", "cut", "lost", "missing"]),
    ),
    max_size=30,
    unique_by=lambda t: t[0],
)


def build(spec):
    lines, records = [], []
    n = 0
    for order, amount, what in spec:
        if what != "lost":
            records.append(pay(order, amount))
        if what == "missing":
            continue
        n += 1
        got = amount + 1 if what == "amount" else amount
        fee = fee_fen(amount, RATE) + (1 if what == "fee" else 0)
        on = DAY + timedelta(1) if what == "cut" else DAY
        lines.append(line(order, got, n=n, fee=fee, on=on))
        if what == "dup":
            n += 1
            lines.append(line(order, got, n=n, fee=fee))
    return lines, records


@settings(max_examples=200)
@given(orders, st.randoms(use_true_random=False))
def test_every_line_and_record_lands_once_and_amounts_are_conserved(spec, rnd):
    lines, records = build(spec)
    out = run(lines, records)
    from_lines = [o for o in out if o.line_no is not None]
    assert sorted(o.line_no for o in from_lines) == sorted(ln.line_no for ln in lines)
    assert sum(o.amount for o in from_lines) == sum(ln.amount_fen for ln in lines)
    explained = {o.key for o in out}
    assert all(r.key in explained for r in records)
    missing = [o for o in out if o.outcome == "missing_external"]
    matched_keys = {o.key for o in from_lines}
    assert sum(o.amount for o in missing) + sum(
        r.amount for r in records if r.key in matched_keys
    ) == sum(r.amount for r in records)
    shuffled_lines, shuffled_records = lines[:], records[:]
    rnd.shuffle(shuffled_lines)
    rnd.shuffle(shuffled_records)
    assert Counter(run(shuffled_lines, shuffled_records)) == Counter(out)


@given(
    st.lists(
        st.tuples(st.text("0123456789", min_size=1, max_size=8), amounts),
        max_size=40,
        unique_by=lambda t: t[0],
    )
)
def test_a_perfect_day_is_all_matched(spec):
    lines = [line(o, a, n=i) for i, (o, a) in enumerate(spec, 1)]
    records = [pay(o, a) for o, a in spec]
    out = run(lines, records)
    assert len(out) == len(spec) and all(o.outcome == "matched" for o in out)


def test_presorted_stream_equals_sorted_in_memory():
    rnd = random.Random(7)
    spec = [
        (f"O{i:05d}", rnd.randint(1, 10**6), rnd.choice(["ok", "lost", "missing", "dup"]))
        for i in range(2000)
    ]
    lines, records = build(spec)
    from reconciliation.matching import line_key

    s_lines = sorted(lines, key=lambda ln: (line_key(ln), ln.line_no))
    s_records = sorted(records, key=lambda r: r.key)
    streamed = list(
        classify(iter(s_lines), iter(s_records), business_date=DAY, fee_rate=RATE, presorted=True)
    )
    assert Counter(streamed) == Counter(run(lines, records))
