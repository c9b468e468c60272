from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.errors import ValidationError
from notices.fees import (
    NO_LATE_FEE,
    SHANGHAI,
    TRAFFIC_FINE_RULE,
    AmountDue,
    LateFeeRule,
    amount_due,
    business_date,
    rule_from_dict,
    rule_to_dict,
    traffic_fine_due_date,
)

DUE = date(2026, 11, 1)
FINE = 20000  # 200.00 yuan


def test_paid_on_due_date_no_fee():
    assert amount_due(FINE, DUE, DUE, TRAFFIC_FINE_RULE) == AmountDue(FINE, 0, FINE, 0)


def test_paid_ten_days_late():
    due = amount_due(FINE, DUE, date(2026, 11, 11), TRAFFIC_FINE_RULE)
    assert due == AmountDue(principal=20000, late_fee=6000, total=26000, days_overdue=10)


def test_fee_capped_at_principal():
    due = amount_due(FINE, DUE, date(2026, 12, 31), TRAFFIC_FINE_RULE)
    assert due.late_fee == 20000
    assert due.total == 40000
    assert due.days_overdue == 60


def test_cap_reached_exactly_on_day_34():
    # 3% * 33 = 99% < 100%; 3% * 34 = 102% -> capped
    assert amount_due(FINE, DUE, DUE + timedelta(days=33), TRAFFIC_FINE_RULE).late_fee == 19800
    assert amount_due(FINE, DUE, DUE + timedelta(days=34), TRAFFIC_FINE_RULE).late_fee == 20000


def test_paid_before_due_no_fee():
    due = amount_due(FINE, DUE, date(2026, 10, 20), TRAFFIC_FINE_RULE)
    assert due == AmountDue(FINE, 0, FINE, 0)


def test_no_late_fee_rule():
    due = amount_due(FINE, DUE, date(2027, 1, 1), NO_LATE_FEE)
    assert due.late_fee == 0
    assert due.total == FINE
    assert due.days_overdue == 61


@pytest.mark.parametrize(
    ("principal", "days", "fee"),
    [
        (3333, 1, 100),  # 99.99 -> 100
        (3350, 1, 101),  # 100.5 -> 101 (half up)
        (3349, 1, 100),  # 100.47 -> 100
        (1, 1, 0),  # 0.03 -> 0
        (17, 1, 1),  # 0.51 -> 1
        (50, 1, 2),  # 1.5 -> 2
        (3333, 7, 700),  # once over the period: 699.93 -> 700 (per day would be 7 * 100)
        (3317, 7, 697),  # 696.57 -> 697; per-day rounding would give 7 * 100 = 700
        (0, 10, 0),
    ],
)
def test_rounding_half_up_once_over_period(principal, days, fee):
    assert amount_due(principal, DUE, DUE + timedelta(days=days), TRAFFIC_FINE_RULE).late_fee == fee


def test_business_date_is_shanghai_calendar():
    assert business_date(datetime(2026, 11, 1, 16, 30, tzinfo=UTC)) == date(2026, 11, 2)
    assert business_date(datetime(2026, 11, 1, 15, 59, tzinfo=UTC)) == date(2026, 11, 1)
    assert business_date(datetime(2026, 11, 2, 0, 0, tzinfo=SHANGHAI)) == date(2026, 11, 2)


def test_business_date_refuses_naive():
    with pytest.raises(ValueError):
        business_date(datetime(2026, 11, 1, 16, 30))


def test_traffic_fine_due_date():
    assert traffic_fine_due_date(date(2026, 10, 17)) == date(2026, 11, 1)
    assert traffic_fine_due_date(date(2026, 12, 25)) == date(2027, 1, 9)


def test_datetime_is_not_accepted_as_date():
    with pytest.raises(TypeError):
        amount_due(FINE, DUE, datetime(2026, 11, 11, tzinfo=UTC), TRAFFIC_FINE_RULE)
    with pytest.raises(TypeError):
        traffic_fine_due_date(datetime(2026, 11, 11, tzinfo=UTC))


@pytest.mark.parametrize("principal", [-1, True, "100", 10.0])
def test_bad_principal(principal):
    with pytest.raises(ValidationError):
        amount_due(principal, DUE, DUE, TRAFFIC_FINE_RULE)


def test_rule_round_trip_through_json():
    for rule in (TRAFFIC_FINE_RULE, NO_LATE_FEE, LateFeeRule("daily_percent", 5, 3000)):
        assert rule_from_dict(json.loads(json.dumps(rule_to_dict(rule)))) == rule
    assert rule_to_dict(TRAFFIC_FINE_RULE) == {
        "kind": "daily_percent",
        "basis_points_per_day": 300,
        "cap_bp_of_principal": 10000,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"kind": "weekly"},
        {"kind": "daily_percent", "basis_points_per_day": -1},
        {"kind": "daily_percent", "basis_points_per_day": "300"},
        {"kind": "daily_percent", "basis_points_per_day": 3.0},
        {"kind": "daily_percent", "cap_bp_of_principal": True},
        {"kind": "none", "extra": 1},
        ["none"],
    ],
)
def test_rule_from_dict_refuses_malformed(bad):
    with pytest.raises(ValidationError):
        rule_from_dict(bad)


def test_partial_cap_rule():
    rule = LateFeeRule("daily_percent", 5, 3000)  # 0.05%/day capped at 30%
    assert amount_due(10000, DUE, DUE + timedelta(days=10), rule).late_fee == 50
    assert amount_due(10000, DUE, DUE + timedelta(days=10000), rule).late_fee == 3000


principals = st.integers(min_value=0, max_value=10**12)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
rules = st.builds(
    LateFeeRule,
    st.sampled_from(["none", "daily_percent"]),
    st.integers(0, 10000),
    st.integers(0, 10000),
)


@given(principals, dates, st.integers(-400, 4000), rules)
def test_property_fee_never_exceeds_principal(principal, due, offset, rule):
    result = amount_due(principal, due, due + timedelta(days=offset), rule)
    assert 0 <= result.late_fee <= principal
    assert result.total == principal + result.late_fee


@given(principals, dates, st.integers(0, 4000), st.integers(0, 4000), rules)
def test_property_fee_monotonic_in_days(principal, due, a, b, rule):
    early, late = sorted((a, b))
    fee_early = amount_due(principal, due, due + timedelta(days=early), rule).late_fee
    fee_late = amount_due(principal, due, due + timedelta(days=late), rule).late_fee
    assert fee_early <= fee_late


@given(principals, dates, st.integers(0, 4000), rules)
def test_property_zero_when_not_overdue(principal, due, early, rule):
    result = amount_due(principal, due, due - timedelta(days=early), rule)
    assert result.late_fee == 0
    assert result.days_overdue == 0
    assert result.total == principal


@given(principals, st.integers(1, 33))
def test_property_traffic_fee_matches_formula(principal, days):
    fee = amount_due(principal, DUE, DUE + timedelta(days=days), TRAFFIC_FINE_RULE).late_fee
    exact_hundredths = principal * 3 * days  # fee * 100
    assert abs(fee * 100 - exact_hundredths) <= 50
