from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import damm

from clearing.errors import ValidationError
from notices.codes import (
    PaymentCodeError,
    damm_checksum,
    format_code,
    generate_code,
    is_valid_code,
    validate_code,
)

REGION = "510100"
SAMPLES = [generate_code(REGION, 2026) for _ in range(5)] + [
    generate_code("110105", 2031, rng=lambda n: 0),
    generate_code("999999", 2099, rng=lambda n: n - 1),
]


def single_substitutions(code: str):
    for i, ch in enumerate(code):
        for d in "0123456789":
            if d != ch:
                yield code[:i] + d + code[i + 1 :]


def adjacent_swaps(code: str):
    for i in range(len(code) - 1):
        if code[i] != code[i + 1]:
            yield code[:i] + code[i + 1] + code[i] + code[i + 2 :]


def test_generated_code_shape():
    code = generate_code(REGION, 2026)
    assert len(code) == 20
    assert code.isascii() and code.isdigit()
    assert code.startswith("51010026")
    assert is_valid_code(code)
    assert validate_code(code) == code


def test_injected_rng_is_used_and_zero_padded():
    code = generate_code("110105", 2031, rng=lambda n: 42)
    assert code[:19] == "1101053100000000042"
    assert is_valid_code(code)


def test_rng_out_of_range_is_refused():
    with pytest.raises(ValueError):
        generate_code(REGION, 2026, rng=lambda n: n)


@pytest.mark.parametrize("region", ["51010", "5101000", "51010a", "５１０１００", "", "510100\n"])
def test_bad_region_refused(region):
    with pytest.raises(ValidationError):
        generate_code(region, 2026)


@pytest.mark.parametrize("year", [26, 999, 10000, True, "2026"])
def test_bad_year_refused(year):
    with pytest.raises(ValidationError):
        generate_code(REGION, year)


@pytest.mark.parametrize("code", SAMPLES)
def test_every_single_digit_substitution_is_detected(code):
    variants = list(single_substitutions(code))
    assert len(variants) == 20 * 9
    assert not any(is_valid_code(v) for v in variants)


@pytest.mark.parametrize("code", SAMPLES)
def test_every_adjacent_transposition_is_detected(code):
    for variant in adjacent_swaps(code):
        assert not is_valid_code(variant), variant


@given(region=st.from_regex(r"[0-9]{6}", fullmatch=True), year=st.integers(2000, 2099))
def test_property_random_codes_valid_and_errors_detected(region, year):
    code = generate_code(region, year)
    assert is_valid_code(code)
    assert code.startswith(region + f"{year % 100:02d}")
    assert not any(is_valid_code(v) for v in single_substitutions(code))
    assert not any(is_valid_code(v) for v in adjacent_swaps(code))


@given(body=st.from_regex(r"[0-9]{19}", fullmatch=True))
def test_property_exactly_one_check_digit_per_body(body):
    assert sum(is_valid_code(body + d) for d in "0123456789") == 1


def test_normalisation_strips_spaces_and_hyphens():
    code = generate_code(REGION, 2026)
    spaced = " ".join(code[i : i + 4] for i in range(0, 20, 4))
    hyphened = "-".join(code[i : i + 4] for i in range(0, 20, 4))
    assert validate_code(spaced) == code
    assert validate_code(f"  {hyphened}\t") == code
    assert validate_code(code[:4] + "\u3000" + code[4:]) == code


def test_format_code_groups_of_four():
    code = generate_code(REGION, 2026)
    formatted = format_code(code)
    assert formatted.split(" ") == [code[i : i + 4] for i in range(0, 20, 4)]
    assert validate_code(formatted) == code


@pytest.mark.parametrize(
    "bad",
    ["", "1234", "1" * 21, "abcdefghijklmnopqrst", "５" * 20, "1234567890123456789x", "1.2"],
)
def test_wrong_length_or_characters(bad):
    with pytest.raises(PaymentCodeError, match="must be 20 digits"):
        validate_code(bad)
    assert not is_valid_code(bad)


def test_wrong_check_digit_reason_and_type():
    code = generate_code(REGION, 2026)
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    with pytest.raises(PaymentCodeError, match="probably mistyped") as info:
        validate_code(wrong)
    assert info.value.type == "invalid-payment-code"
    assert info.value.status == 422
    assert isinstance(info.value, ValidationError)


def test_non_string_is_refused():
    assert not is_valid_code(12345678901234567890)  # type: ignore[arg-type]


def test_codes_are_not_sequential():
    codes = [generate_code(REGION, 2026) for _ in range(1000)]
    assert len(set(codes)) == 1000
    assert codes != sorted(codes)
    randoms = [int(c[8:19]) for c in codes]
    increasing = sum(b > a for a, b in itertools.pairwise(randoms))
    assert 300 < increasing < 700


@given(st.text(alphabet="0123456789", max_size=40))
def test_the_table_driven_damm_agrees_with_stdnum(digits):
    assert damm_checksum(digits) == damm.checksum(digits)
    assert str(damm_checksum(digits)) == damm.calc_check_digit(digits)


def test_generated_codes_carry_stdnums_check_digit():
    for code in SAMPLES:
        assert code[-1] == damm.calc_check_digit(code[:-1])
        assert damm.is_valid(code)
