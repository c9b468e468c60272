"""Late fees (加处罚款 / 滞纳金) on overdue notices. All amounts are integer fen.

Traffic fines follow the Administrative Penalty Law (行政处罚法, 2021):

* art. 67 — the party pays within 15 days of receiving the penalty decision;
* art. 72 — when overdue, 3% of the fine is added per day, and the added amount may not
  exceed the fine itself.

Days are counted on the Asia/Shanghai calendar whatever the server's time zone.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from clearing.errors import ValidationError

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
BASIS_POINTS = 10_000
TRAFFIC_FINE_PAYMENT_DAYS = 15
_KINDS = ("none", "daily_percent")


@dataclass(frozen=True)
class LateFeeRule:
    """How a late fee accrues.

    ``basis_points_per_day`` — daily rate (300 bp = 3%); ``cap_bp_of_principal`` — the total
    fee never exceeds this share of the principal (10000 bp = 100%).
    """

    kind: Literal["none", "daily_percent"]
    basis_points_per_day: int = 0
    cap_bp_of_principal: int = BASIS_POINTS

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValidationError(f"late fee kind must be one of {_KINDS}", field="kind")
        for name in ("basis_points_per_day", "cap_bp_of_principal"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{name} must be a non-negative integer", field=name)


NO_LATE_FEE = LateFeeRule("none")
TRAFFIC_FINE_RULE = LateFeeRule("daily_percent", 300, BASIS_POINTS)


@dataclass(frozen=True)
class AmountDue:
    """What must be paid on a given day, in fen."""

    principal: int
    late_fee: int
    total: int
    days_overdue: int


def business_date(moment: datetime) -> date:
    """Return the Asia/Shanghai calendar date of an aware ``moment``; naive -> ValueError."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("business_date needs a timezone-aware datetime")
    return moment.astimezone(SHANGHAI).date()


def traffic_fine_due_date(decision_date: date) -> date:
    """Return the last day to pay a traffic fine without a late fee: ``decision_date`` + 15.

    The statute counts from the day the decision is *received*; pass the service date when it
    differs from the decision date.
    """
    _require_date(decision_date, "decision_date")
    return decision_date + timedelta(days=TRAFFIC_FINE_PAYMENT_DAYS)


def _require_date(value: object, name: str) -> None:
    # datetime is a subclass of date; a datetime here would silently use the server's calendar.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{name} must be a date (use business_date() for a datetime)")


def _round_half_up_div(numerator: int, denominator: int) -> int:
    """Return numerator / denominator rounded half-up, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def amount_due(principal_fen: int, due_date: date, on: date, rule: LateFeeRule) -> AmountDue:
    """Return principal, late fee and total owed when paying on business date ``on``.

    ``days_overdue`` is ``on - due_date`` in days when positive, else 0 (paying on the due date
    is on time). For ``daily_percent`` the fee is computed once over the whole period, in
    integer arithmetic, rounded half-up to the fen, then capped::

        fee = min(cap, round_half_up(principal * bp_per_day * days / 10000))
        cap = floor(principal * cap_bp / 10000)

    e.g. 3333 fen at 3% for 1 day = 99.99 fen -> 100 fen. Rounding once (not per day) keeps
    the fee within half a fen of the exact amount.
    """
    if isinstance(principal_fen, bool) or not isinstance(principal_fen, int) or principal_fen < 0:
        raise ValidationError("principal must be a non-negative integer of fen", field="principal")
    _require_date(due_date, "due_date")
    _require_date(on, "on")
    days = max(0, (on - due_date).days)
    fee = 0
    if rule.kind == "daily_percent" and days > 0:
        exact = principal_fen * rule.basis_points_per_day * days
        uncapped = _round_half_up_div(exact, BASIS_POINTS)
        cap = principal_fen * rule.cap_bp_of_principal // BASIS_POINTS
        fee = min(uncapped, cap)
    return AmountDue(principal_fen, fee, principal_fen + fee, days)


def rule_to_dict(rule: LateFeeRule) -> dict[str, Any]:
    """Return ``rule`` as a JSON-serialisable dict."""
    return {
        "kind": rule.kind,
        "basis_points_per_day": rule.basis_points_per_day,
        "cap_bp_of_principal": rule.cap_bp_of_principal,
    }


def rule_from_dict(d: Mapping[str, Any]) -> LateFeeRule:
    """Rebuild a rule stored by :func:`rule_to_dict`; raise ValidationError if malformed."""
    if not isinstance(d, Mapping):
        raise ValidationError("late fee rule must be an object", field="late_fee_rule")
    unknown = set(d) - {"kind", "basis_points_per_day", "cap_bp_of_principal"}
    if unknown:
        raise ValidationError(
            f"unknown late fee rule fields: {sorted(map(str, unknown))}", field="late_fee_rule"
        )
    if "kind" not in d:
        raise ValidationError("late fee rule needs a kind", field="kind")
    return LateFeeRule(
        d["kind"],
        d.get("basis_points_per_day", 0),
        d.get("cap_bp_of_principal", BASIS_POINTS),
    )
