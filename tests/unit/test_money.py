"""Unit tests for clearing.money: strict parsing, formatting and Money arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.errors import ValidationError
from clearing.money import CNY, MAX_FEN, Money, MoneyError, format_fen, parse_fen

amounts = st.integers(min_value=-MAX_FEN, max_value=MAX_FEN)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12.30", 1230),
        ("12.3", 1230),
        ("12", 1200),
        ("0.05", 5),
        ("0.50", 50),
        ("0", 0),
        ("0.00", 0),
        ("100000000000.01", 10_000_000_000_001),
        ("10000000000000.00", MAX_FEN),
    ],
)
def test_parse_accepts(text: str, fen: int) -> None:
    assert parse_fen(text) == fen


@pytest.mark.parametrize(
    ("text", "fen"),
    [("-12.30", -1230), ("-0.05", -5), ("-10000000000000", -MAX_FEN)],
)
def test_parse_accepts_negative_when_allowed(text: str, fen: int) -> None:
    assert parse_fen(text, allow_negative=True) == fen


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" 12.30", "spaces"),
        ("12.30 ", "spaces"),
        ("12.30\n", "spaces"),
        ("+12.30", "'+'"),
        ("NaN", "NaN"),
        ("nan", "NaN"),
        ("Infinity", "Infinity"),
        ("-inf", "Infinity"),
        ("1e3", "exponent"),
        ("1E3", "exponent"),
        ("1.5e-2", "exponent"),
        ("1.234", "two decimal"),
        ("0.001", "two decimal"),
        ("1,000", "thousands"),
        ("1,000.00", "thousands"),
        ("1_000", "thousands"),
        ("1 000", "thousands"),
        ("１２.３０", "ASCII"),
        ("١٢", "ASCII"),
        ("12.３", "ASCII"),
        (".5", "before the decimal point"),
        ("5.", "after the decimal point"),
        ("012", "leading zeros"),
        ("00.50", "leading zeros"),
        ("-12.30", "negative"),
        ("10000000000000.01", "exceeds"),
        ("99999999999999999999999", "exceeds"),
        ("abc", "not a decimal amount"),
        ("1.2.3", "not a decimal amount"),
        ("0x10", "not a decimal amount"),
        ("--5", "negative"),
    ],
)
def test_parse_refuses_with_reason(text: str, reason: str) -> None:
    with pytest.raises(MoneyError) as exc:
        parse_fen(text, field="amount")
    assert reason in exc.value.detail
    assert exc.value.field == "amount"
    assert exc.value.type == "invalid-amount"
    assert exc.value.status == 422


@pytest.mark.parametrize("value", [12.3, 12, Decimal("12.30"), True, None, b"12.30"])
def test_parse_refuses_non_str(value: object) -> None:
    with pytest.raises(MoneyError) as exc:
        parse_fen(value, field="amount")  # type: ignore[arg-type]
    assert 'must be strings like "12.30"' in exc.value.detail
    assert type(value).__name__ in exc.value.detail
    assert exc.value.field == "amount"


@pytest.mark.parametrize("text", ["--5", "-", "-.5", "-5.", "-012"])
def test_parse_refuses_malformed_negative(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_fen(text, allow_negative=True)


def test_money_error_is_validation_error() -> None:
    assert issubclass(MoneyError, ValidationError)


@pytest.mark.parametrize(
    ("fen", "text"),
    [(1230, "12.30"), (5, "0.05"), (-5, "-0.05"), (0, "0.00"), (-1230, "-12.30"), (100, "1.00")],
)
def test_format_fen(fen: int, text: str) -> None:
    assert format_fen(fen) == text


@given(amounts)
def test_format_parse_roundtrip(fen: int) -> None:
    assert parse_fen(format_fen(fen), allow_negative=True) == fen


@given(
    st.integers(min_value=0, max_value=MAX_FEN // 100 - 1),
    st.sampled_from(["", ".0", ".00", ".5", ".05", ".50", ".9", ".99"]),
    st.booleans(),
)
def test_format_of_parse_is_canonical(whole: int, frac: str, negative: bool) -> None:
    text = f"{'-' if negative else ''}{whole}{frac}"
    formatted = format_fen(parse_fen(text, allow_negative=True))
    digits = frac[1:].ljust(2, "0")
    sign = "-" if negative and (whole or int(digits)) else ""
    assert formatted == f"{sign}{whole}.{digits}"


@given(amounts, amounts)
def test_addition_and_subtraction(a: int, b: int) -> None:
    x, y = Money(a), Money(b)
    assert (x + y).fen == a + b
    assert (x + y) - y == x
    assert x + y == y + x
    assert x - y == -(y - x)
    assert x + Money.zero() == x
    assert -(-x) == x


@given(amounts, amounts, amounts)
def test_addition_is_associative(a: int, b: int, c: int) -> None:
    assert (Money(a) + Money(b)) + Money(c) == Money(a) + (Money(b) + Money(c))


@given(amounts, amounts)
def test_ordering_matches_fen(a: int, b: int) -> None:
    x, y = Money(a), Money(b)
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert (x > y) == (a > b)
    assert (x >= y) == (a >= b)
    assert (x == y) == (a == b)


@given(amounts)
def test_money_parse_format_roundtrip(fen: int) -> None:
    money = Money(fen, "USD")
    assert Money.parse(money.format(), "USD", allow_negative=True) == money


def test_money_str_and_format() -> None:
    money = Money.parse("12.3")
    assert money == Money(1230, CNY)
    assert money.format() == "12.30"
    assert str(money) == "12.30 CNY"
    assert str(-money) == "-12.30 CNY"


def test_money_predicates() -> None:
    assert Money.zero().is_zero
    assert not Money.zero().is_positive
    assert Money(1).is_positive
    assert Money(-1).is_negative
    assert Money.zero("USD") == Money(0, "USD")


def test_money_parse_passes_field() -> None:
    with pytest.raises(MoneyError) as exc:
        Money.parse("1e3", field="fee")
    assert exc.value.field == "fee"
    assert "exponent" in exc.value.detail


@pytest.mark.parametrize(
    "op",
    [
        lambda x, y: x + y,
        lambda x, y: x - y,
        lambda x, y: x < y,
        lambda x, y: x <= y,
        lambda x, y: x > y,
        lambda x, y: x >= y,
    ],
)
def test_currency_mismatch_refused(op) -> None:
    with pytest.raises(MoneyError, match="CNY and USD"):
        op(Money(100, "CNY"), Money(100, "USD"))


def test_different_currencies_are_not_equal() -> None:
    assert Money(100, "CNY") != Money(100, "USD")


@pytest.mark.parametrize("fen", [12.3, True, "12", Decimal(1), None])
def test_money_rejects_non_int_fen(fen: object) -> None:
    with pytest.raises(MoneyError, match="fen must be an int"):
        Money(fen)  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["cny", "CN", "CNYY", "", "ＣＮＹ", "C1Y", None, " CNY"])
def test_money_rejects_bad_currency(currency: object) -> None:
    with pytest.raises(MoneyError, match="currency"):
        Money(1, currency)  # type: ignore[arg-type]


def test_money_is_frozen() -> None:
    money = Money(1)
    with pytest.raises(AttributeError):
        money.fen = 2  # type: ignore[misc]


def test_money_mixed_with_int_is_type_error() -> None:
    with pytest.raises(TypeError):
        Money(1) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(1) < 1  # type: ignore[operator]
