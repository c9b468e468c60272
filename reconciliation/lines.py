"""The one normalised line every statement parser yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any


class LineKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    SETTLEMENT = "settlement"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a gateway bill or a bank statement, in our terms.

    ``amount_fen`` is signed from the platform's point of view: positive money in (a payment
    collected, a bank credit), negative money out (a refund, a bank debit).
    """

    source: str
    """Parser that produced it: alipay, wechatpay, unionpay, ofx, camt053."""
    line_no: int
    """1-based line (or entry) number in the file, for error messages and audit."""
    external_id: str
    """The gateway's transaction id or the bank's reference."""
    order_id: str | None
    """Our order (attempt) id when the file carries it."""
    amount_fen: int
    fee_fen: int
    """Fee charged for this line, integer fen, rounded half-up from ``fee_exact``."""
    currency: str
    booked_on: date
    value_on: date | None
    kind: LineKind
    reference: str
    """The raw reference / memo text, for humans."""
    fee_exact: Decimal | None = None
    """The fee exactly as written (yuan) when the file has sub-fen precision."""
    refund_id: str | None = None
    """Our refund id, for refund lines."""
    reversal: bool = False
    """A bank entry reversing an earlier one (camt.053 RvslInd)."""


LineRow = tuple[Any, ...]
"""A :class:`StatementLine`'s fields in order, as a plain tuple (``StatementLine(*row)`` is the
line): what the bulk path of a parser yields, without an object per line."""


def line_row(line: StatementLine) -> LineRow:
    """The :data:`LineRow` of ``line``."""
    return tuple(getattr(line, name) for name in StatementLine.__dataclass_fields__)
