"""Shape validation of department API requests: pure, no I/O."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from notices.schemas import (
    NoticeCreate,
    describe_errors,
    field_path,
    parse_batch_entry,
)
from tests.notice_factories import ID_NUMBER, fine


def errors_of(body):
    with pytest.raises(ValidationError) as info:
        NoticeCreate.model_validate(body)
    return {e.field: e.detail for e in describe_errors(info.value.errors())}


def test_a_valid_fine_parses():
    notice = NoticeCreate.model_validate(fine(metadata={"case": "A-1"}))
    assert notice.decision_date == date(2026, 10, 17)
    assert notice.items[0].amount_fen is None and notice.items[0].quantity == 1
    assert notice.payer.id_number == ID_NUMBER


def test_amounts_are_parsed_strictly_into_fen():
    notice = NoticeCreate.model_validate(fine(items=[{"item_code": "X", "amount": "12.3"}]))
    assert notice.items[0].amount_fen == 1230


@pytest.mark.parametrize(
    "amount", ["0", "0.00", "-1.00", "1.234", "1e3", "", " 1", "1,000", "NaN", "１２"]
)
def test_bad_amounts_name_the_field(amount):
    errors = errors_of(fine(items=[{"item_code": "X", "amount": amount}]))
    assert "items[0].amount" in errors


@pytest.mark.parametrize("amount", [200, 200.0, True])
def test_amounts_must_be_strings(amount):
    assert "items[0].amount" in errors_of(fine(items=[{"item_code": "X", "amount": amount}]))


def test_unknown_fields_are_refused_at_every_level():
    errors = errors_of(
        fine(
            colour="red",
            payer={"name": "张三", "nick": "x"},
            items=[{"item_code": "X", "price": "1.00"}],
        )
    )
    assert errors == {
        "colour": "unknown field",
        "payer.nick": "unknown field",
        "items[0].price": "unknown field",
    }


@pytest.mark.parametrize("quantity", [0, -1, 1001, "1", 1.5, True])
def test_quantity_is_a_small_positive_integer(quantity):
    assert "items[0].quantity" in errors_of(fine(items=[{"item_code": "X", "quantity": quantity}]))


@pytest.mark.parametrize(
    "value",
    ["2026-13-01", "2026-02-30", "2026-11-01T00:00:00", "20261101", 1700000000, "yesterday"],
)
def test_dates_are_iso_calendar_days(value):
    assert "decision_date" in errors_of(fine(decision_date=value))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reference", "r" * 65),
        ("reference", "   "),
        ("description", "d" * 501),
        ("return_url", "javascript:alert(1)"),
        ("return_url", "https://x/" + "a" * 500),
        ("kind", "parking"),
        ("items", []),
    ],
)
def test_top_level_limits(field, value):
    assert field in errors_of(fine(**{field: value}))


def test_at_most_50_items():
    assert "items" in errors_of(fine(items=[{"item_code": "X"}] * 51))


@pytest.mark.parametrize(
    "payer",
    [
        {"name": ""},
        {"name": "n" * 101},
        {"name": "张三", "id_number": "110105194912310021"},
        {"name": "张三", "phone": "call me"},
        {"name": "张三", "id_number": 110105},
    ],
)
def test_payer_is_checked(payer):
    assert any(f.startswith("payer") for f in errors_of(fine(payer=payer)))


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(16)},
        {"k" * 41: "v"},
        {"k": "v" * 501},
        {"k": 1},
        {"": "v"},
    ],
)
def test_metadata_is_bounded(metadata):
    assert any(f.startswith("metadata") for f in errors_of(fine(metadata=metadata)))


def test_metadata_of_15_keys_is_fine():
    NoticeCreate.model_validate(fine(metadata={f"k{i}": "v" * 500 for i in range(15)}))


def test_id_numbers_are_normalised():
    notice = NoticeCreate.model_validate(
        fine(payer={"name": "x", "id_number": "11010519491231002x"})
    )
    assert notice.payer.id_number == ID_NUMBER


def test_field_paths():
    assert field_path(("items", 0, "amount")) == "items[0].amount"
    assert field_path(()) == ""


def test_batch_entries_are_parsed_one_by_one():
    assert isinstance(parse_batch_entry(fine()), NoticeCreate)
    problems = parse_batch_entry({"kind": "tuition"})
    assert {p.field for p in problems} == {"payer", "items", "reference", "description"}
    assert parse_batch_entry(7)[0].field is None
