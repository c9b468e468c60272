"""A remittance never sends a treasury more than it is owed (refunds paid back come off)."""

from hypothesis import given
from hypothesis import strategies as st

from reconciliation.remittance import _cap

LINES = [
    {"revenue_code": "103050101", "budget_level": "city", "amount": 20000},
    {"revenue_code": "103050199", "budget_level": "city", "amount": 3000},
]


def test_owed_at_least_collected_keeps_the_voucher():
    assert _cap(LINES, 23000) == LINES
    assert _cap(LINES, 99999) == LINES


def test_a_refund_reduces_the_lines_in_proportion():
    capped = _cap(LINES, 20000)  # 30.00 refunded
    assert [line["amount"] for line in capped] == [17391, 2609]
    assert [line["refunded"] for line in capped] == [2609, 391]


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=6), st.integers(-(10**9), 10**10))
def test_cap_conserves_every_fen(amounts, owed):
    voucher = [
        {"revenue_code": str(i), "budget_level": "city", "amount": a} for i, a in enumerate(amounts)
    ]
    capped = _cap(voucher, owed)
    total = sum(amounts)
    assert sum(line["amount"] for line in capped) == min(total, max(owed, 0))
    assert all(line["amount"] >= 0 for line in capped)
