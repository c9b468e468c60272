"""Unit tests for clearing.split: basis-point revenue splits that conserve every fen."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.errors import ValidationError
from clearing.split import TOTAL_BP, SplitError, allocate, split_amount, validate_shares


@st.composite
def share_maps(draw: st.DrawFn) -> dict[str, int]:
    """Shares summing to 10000, built from distinct random cut points in (0, 10000)."""
    count = draw(st.integers(min_value=1, max_value=12))
    cuts = draw(
        st.lists(
            st.integers(min_value=1, max_value=TOTAL_BP - 1),
            min_size=count - 1,
            max_size=count - 1,
            unique=True,
        )
    )
    bounds = [0, *sorted(cuts), TOTAL_BP]
    keys = draw(
        st.lists(st.text(min_size=1, max_size=8), min_size=count, max_size=count, unique=True)
    )
    return {key: hi - lo for key, lo, hi in zip(keys, bounds, bounds[1:], strict=False)}


fens = st.integers(min_value=0, max_value=10**12)


def test_thirds_example() -> None:
    result = split_amount(100, {"a": 3333, "b": 3333, "c": 3334})
    assert result == {"a": 33, "b": 33, "c": 34}
    assert sum(result.values()) == 100


def test_tie_broken_by_key() -> None:
    assert split_amount(1, {"b": 5000, "a": 5000}) == {"a": 1, "b": 0}
    # remainders: c=6668, a=b=6666 -> c first, then a beats b on key
    assert split_amount(2, {"c": 3334, "b": 3333, "a": 3333}) == {"a": 1, "b": 0, "c": 1}


def test_largest_remainder_wins() -> None:
    # exact: a=0.3, b=0.7 of 1 fen -> b gets it
    assert split_amount(1, {"a": 3000, "b": 7000}) == {"a": 0, "b": 1}


def test_result_ordered_by_key_and_zero_parts_present() -> None:
    result = split_amount(0, {"z": 6000, "a": 4000})
    assert list(result) == ["a", "z"]
    assert result == {"a": 0, "z": 0}


def test_single_share_takes_all() -> None:
    assert split_amount(12345, {"central": 10000}) == {"central": 12345}


@pytest.mark.parametrize("fen", [-1, True, 1.5, "100", None])
def test_split_rejects_bad_amount(fen: object) -> None:
    with pytest.raises(SplitError, match="non-negative int"):
        split_amount(fen, {"a": 10000})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shares", "reason"),
    [
        ({}, "non-empty"),
        ({"a": 5000}, "sum to"),
        ({"a": 5000, "b": 5001}, "sum to"),
        ({"a": 0, "b": 10000}, "from 1 to"),
        ({"a": -1, "b": 10001}, "from 1 to"),
        ({"a": 10001}, "from 1 to"),
        ({"a": True, "b": 9999}, "from 1 to"),
        ({"a": 5000.0, "b": 5000}, "from 1 to"),
        ({"a": "5000", "b": 5000}, "from 1 to"),
        ({"": 10000}, "non-empty strings"),
        ({1: 10000}, "non-empty strings"),
        ([("a", 10000)], "non-empty mapping"),
    ],
)
def test_validate_shares_rejects(shares: object, reason: str) -> None:
    with pytest.raises(SplitError, match=reason) as exc:
        validate_shares(shares)  # type: ignore[arg-type]
    assert exc.value.type == "invalid-split"
    assert isinstance(exc.value, ValidationError)


def test_split_validates_shares() -> None:
    with pytest.raises(SplitError):
        split_amount(100, {"a": 5000})


@given(fens, share_maps())
def test_split_conserves_and_is_fair(fen: int, shares: dict[str, int]) -> None:
    validate_shares(shares)
    result = split_amount(fen, shares)
    assert sum(result.values()) == fen
    assert list(result) == sorted(shares)
    for key, bp in shares.items():
        assert result[key] >= 0
        assert abs(result[key] * TOTAL_BP - fen * bp) < TOTAL_BP


@given(fens, share_maps())
def test_split_is_deterministic(fen: int, shares: dict[str, int]) -> None:
    reordered = dict(reversed(list(shares.items())))
    assert split_amount(fen, shares) == split_amount(fen, shares)
    assert list(split_amount(fen, reordered).items()) == list(split_amount(fen, shares).items())


@given(share_maps(), st.integers(min_value=1, max_value=TOTAL_BP))
def test_validate_shares_rejects_wrong_sum(shares: dict[str, int], delta: int) -> None:
    first = next(iter(shares))
    broken = {**shares, first: shares[first] + delta}
    with pytest.raises(SplitError):
        validate_shares(broken)


@given(share_maps(), st.integers(min_value=-TOTAL_BP, max_value=0))
def test_validate_shares_rejects_non_positive(shares: dict[str, int], bad: int) -> None:
    first = next(iter(shares))
    with pytest.raises(SplitError):
        validate_shares({**shares, first: bad})


# allocate: proportional to arbitrary positive weights ------------------------------------------


def test_allocate_example():
    assert allocate(6000, {"a": 20000, "b": 10000}) == {"a": 4000, "b": 2000}
    assert allocate(1, {"a": 1, "b": 1}) == {"a": 1, "b": 0}


@given(
    st.integers(0, 10**12),
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3), st.integers(1, 10**9), min_size=1, max_size=8
    ),
)
def test_allocate_conserves_and_is_proportional(fen, weights):
    parts = allocate(fen, weights)
    total = sum(weights.values())
    assert sum(parts.values()) == fen
    for key, part in parts.items():
        assert abs(part * total - fen * weights[key]) < total


def test_allocate_refuses_bad_weights():
    with pytest.raises(SplitError):
        allocate(10, {})
    with pytest.raises(SplitError):
        allocate(10, {"a": 0})
