"""Pricing, dates and catalogue rules of a notice (``notices.service.prepare``): pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from clearing.errors import ValidationError
from notices.catalogue import Item, load_seed
from notices.departments import Principal
from notices.fees import NO_LATE_FEE, TRAFFIC_FINE_RULE, LateFeeRule
from notices.models import CatalogueItem
from notices.service import decode_cursor, encode_cursor, late_fee_note, prepare
from tests.notice_factories import fine, request

TODAY = date(2026, 11, 20)
POLICE = Principal(1, "成都交警", "police", "510100", "abcd1234", frozenset())
SCHOOL = Principal(2, "四川大学", "school", "510100", "abcd1235", frozenset())


@pytest.fixture(scope="module")
def catalogue():
    items = {}
    for n, spec in enumerate(load_seed(), start=1):
        items[spec.code] = Item.from_row(
            CatalogueItem(
                id=n,
                code=spec.code,
                name_zh=spec.name_zh,
                name_en=spec.name_en,
                kind=spec.kind,
                amount=spec.amount_fen,
                max_amount=spec.max_amount_fen,
                late_fee_rule={
                    "kind": spec.late_fee_rule.kind,
                    "basis_points_per_day": spec.late_fee_rule.basis_points_per_day,
                    "cap_bp_of_principal": spec.late_fee_rule.cap_bp_of_principal,
                },
                shares=dict(spec.shares),
                revenue_code=spec.revenue_code,
                budget_level=spec.budget_level,
                department_kinds=list(spec.department_kinds),
                department_names=list(spec.department_names),
                active=True,
            )
        )
    return items


def school_notice(**kw):
    body = {
        "kind": "tuition",
        "payer": {"name": "李四"},
        "items": [
            {"item_code": "EDU-TUITION", "amount": "4800.00"},
            {"item_code": "EDU-ACCOMMODATION"},
            {"item_code": "EDU-TEXTBOOKS", "amount": "150.50", "quantity": 2},
        ],
        "due_date": "2026-12-01",
        "reference": "S1",
        "description": "秋季学期",
    }
    body.update(kw)
    return request(body)


def refused(field, body, catalogue, who=POLICE):
    with pytest.raises(ValidationError) as info:
        prepare(body if not isinstance(body, dict) else request(body), who, catalogue, TODAY)
    assert info.value.field == field
    return info.value.detail


def test_traffic_fine_is_due_15_days_after_the_decision(catalogue):
    p = prepare(request(fine()), POLICE, catalogue, TODAY)
    assert (p.principal, p.due_date, p.rule) == (20_000, date(2026, 11, 1), TRAFFIC_FINE_RULE)
    assert p.expires_on == date(2026, 11, 1) + timedelta(days=90)


def test_an_explicit_due_date_overrides_the_statutory_one(catalogue):
    p = prepare(request(fine(due_date="2026-11-30")), POLICE, catalogue, TODAY)
    assert p.due_date == date(2026, 11, 30)


def test_tuition_sums_lines_and_expires_30_days_after_due(catalogue):
    p = prepare(school_notice(), SCHOOL, catalogue, TODAY)
    assert p.principal == 480_000 + 120_000 + 2 * 15_050
    assert [line["amount"] for line in p.lines] == [480_000, 120_000, 30_100]
    assert p.rule == NO_LATE_FEE and p.expires_on == date(2026, 12, 31)


def test_service_fees_expire_on_their_due_date(catalogue):
    body = {
        "kind": "service_fee",
        "payer": {"name": "王五"},
        "items": [{"item_code": "SF-PLATES"}],
        "due_date": "2026-11-25",
        "reference": "P",
        "description": "号牌",
    }
    assert prepare(request(body), POLICE, catalogue, TODAY).expires_on == date(2026, 11, 25)


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("decision_date", {"decision_date": None}),
        ("decision_date", {"decision_date": "2026-11-21"}),
        ("decision_date", {"decision_date": "2020-01-01"}),
        ("due_date", {"due_date": "2026-10-16"}),
        ("due_date", {"due_date": "2029-01-01"}),
        ("expires_on", {"expires_on": "2026-10-31"}),
        ("items[0].item_code", {"items": [{"item_code": "NOPE"}]}),
        ("items[0].item_code", {"items": [{"item_code": "EDU-TUITION", "amount": "1.00"}]}),
        ("items[0].amount", {"items": [{"item_code": "TF-RED-LIGHT", "amount": "199.99"}]}),
    ],
)
def test_fine_rules(field, changes, catalogue):
    refused(field, fine(**changes), catalogue)


def test_the_fixed_amount_may_be_repeated(catalogue):
    body = fine(items=[{"item_code": "TF-RED-LIGHT", "amount": "200.00"}])
    assert prepare(request(body), POLICE, catalogue, TODAY).principal == 20_000


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("due_date", {"due_date": None}),
        ("due_date", {"due_date": "2026-11-19"}),
        ("decision_date", {"decision_date": "2026-11-01"}),
        ("items[0].amount", {"items": [{"item_code": "EDU-TUITION"}]}),
        ("items[0].amount", {"items": [{"item_code": "EDU-TUITION", "amount": "100000.01"}]}),
        ("items", {"items": [{"item_code": "EDU-TUITION", "amount": "100000.00", "quantity": 11}]}),
    ],
)
def test_tuition_rules(field, changes, catalogue):
    refused(field, school_notice(**changes), catalogue, SCHOOL)


def test_a_department_only_uses_items_meant_for_it(catalogue):
    detail = refused("items[0].item_code", school_notice(), catalogue, POLICE)
    assert "EDU-TUITION" in detail
    refused("items[0].item_code", fine(), catalogue, SCHOOL)


def test_items_named_for_a_department_are_usable_by_it(catalogue):
    named = replace(catalogue["EDU-TEXTBOOKS"], department_names=frozenset({"成都交警"}))
    body = school_notice(items=[{"item_code": "EDU-TEXTBOOKS", "amount": "1.00"}])
    assert prepare(body, POLICE, {**catalogue, "EDU-TEXTBOOKS": named}, TODAY).principal == 100


def test_items_with_different_late_fee_rules_cannot_share_a_notice(catalogue):
    late = replace(catalogue["EDU-ACCOMMODATION"], rule=LateFeeRule("daily_percent", 5, 1000))
    refused("items", school_notice(), {**catalogue, "EDU-ACCOMMODATION": late}, SCHOOL)


def test_cursors_round_trip_and_refuse_forgeries():
    assert decode_cursor(encode_cursor(12345)) == 12345
    for bad in ("", "!!", "bjE6eA", encode_cursor(1)[:-1] + "*"):
        with pytest.raises(ValidationError):
            decode_cursor(bad)


def test_late_fee_notes():
    assert late_fee_note(NO_LATE_FEE) is None
    assert "3%" in late_fee_note(TRAFFIC_FINE_RULE) and "100%" in late_fee_note(TRAFFIC_FINE_RULE)
