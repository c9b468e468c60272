"""Split an amount between treasuries by basis-point shares, never creating or losing a fen."""

from __future__ import annotations

from collections.abc import Mapping

from clearing.errors import ValidationError

TOTAL_BP = 10_000


class SplitError(ValidationError):
    """Shares are malformed or an amount cannot be split."""

    type = "invalid-split"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_shares(shares: Mapping[str, int]) -> None:
    """Check shares: non-empty, str keys, int basis points 1..10000 summing to 10000."""
    if not isinstance(shares, Mapping) or not shares:
        raise SplitError("shares must be a non-empty mapping of treasury to basis points")
    for key, bp in shares.items():
        if not isinstance(key, str) or not key:
            raise SplitError(f"share keys must be non-empty strings, got {key!r}")
        if not _is_int(bp) or not 1 <= bp <= TOTAL_BP:
            raise SplitError(f"share {key!r} must be an int from 1 to {TOTAL_BP}, got {bp!r}")
    total = sum(shares.values())
    if total != TOTAL_BP:
        raise SplitError(f"shares must sum to {TOTAL_BP} basis points, got {total}")


def split_amount(fen: int, shares: Mapping[str, int]) -> dict[str, int]:
    """Split ``fen`` by ``shares`` using the largest-remainder method.

    Each share gets ``floor(fen * bp / 10000)``; the leftover fen go one each to the largest
    remainders, ties broken by key ascending. The parts always sum to ``fen``; the result is
    ordered by key and includes keys whose part is zero.
    """
    if not _is_int(fen) or fen < 0:
        raise SplitError(f"amount to split must be a non-negative int of fen, got {fen!r}")
    validate_shares(shares)
    return _largest_remainder(fen, shares, TOTAL_BP)


def allocate(fen: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``fen`` in proportion to positive integer ``weights`` (e.g. item amounts), by the
    same largest-remainder rule as :func:`split_amount`; used to spread a late fee over items."""
    if not _is_int(fen) or fen < 0:
        raise SplitError(f"amount to allocate must be a non-negative int of fen, got {fen!r}")
    if not weights or any(not _is_int(w) or w <= 0 for w in weights.values()):
        raise SplitError("weights must be a non-empty mapping of positive ints")
    return _largest_remainder(fen, weights, sum(weights.values()))


def _largest_remainder(fen: int, weights: Mapping[str, int], total: int) -> dict[str, int]:
    keys = sorted(weights)
    parts = {key: fen * weights[key] // total for key in keys}
    leftover = fen - sum(parts.values())
    by_remainder = sorted(keys, key=lambda key: (-(fen * weights[key] % total), key))
    for key in by_remainder[:leftover]:
        parts[key] += 1
    return parts
