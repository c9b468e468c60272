"""Money as integer minor units (fen) plus an ISO 4217 currency code.

Amounts are never held in binary fractions: text is parsed strictly into an ``int`` of fen
(1 yuan = 100 fen) and formatted back with exactly two decimals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clearing.errors import ValidationError

CNY = "CNY"

MAX_FEN = 10**15
"""Largest magnitude accepted when parsing (10^13 yuan); anything bigger is a typo or an attack."""

_AMOUNT = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]{1,2}))?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_EXPONENT = re.compile(r"[0-9.]*e[+-]?[0-9]*")
_NON_FINITE = {"nan", "inf", "infinity"}


class MoneyError(ValidationError):
    """An amount or currency is malformed, or two currencies were mixed."""

    type = "invalid-amount"


def _refuse(text: str, reason: str, field: str | None) -> MoneyError:
    return MoneyError(f"invalid amount {text!r}: {reason}", field=field)


def _diagnose(text: str, allow_negative: bool) -> str | None:
    """Return why ``text`` is not a plain amount, or None when nothing specific is wrong."""
    if not text.strip():
        return "amount is empty"
    if text != text.strip():
        return "leading or trailing spaces are not allowed"
    body = text[1:] if text[0] in "+-" else text
    if text[0] == "+":
        return "a leading '+' is not allowed"
    if body.lower() in _NON_FINITE:
        return "NaN and Infinity are not amounts"
    if any(ch in body for ch in ",_' "):
        return "thousands separators are not allowed"
    if not body.isascii():
        return "only ASCII digits 0-9 are allowed (no full-width or other digits)"
    if _EXPONENT.fullmatch(body.lower()):
        return "exponent notation is not allowed"
    if text[0] == "-" and not allow_negative:
        return "negative amounts are not allowed here"
    return _diagnose_shape(body)


def _diagnose_shape(body: str) -> str | None:
    """Explain problems with the digits-and-dot shape of an unsigned amount."""
    whole, dot, frac = body.partition(".")
    if dot and not whole:
        return "a digit is required before the decimal point (write '0.5', not '.5')"
    if dot and not frac:
        return "digits are required after the decimal point (write '5' or '5.00', not '5.')"
    if dot and frac.isdigit() and len(frac) > 2:
        return "more than two decimal places (fen is the smallest unit)"
    if len(whole) > 1 and whole.startswith("0") and whole.isdigit():
        return "leading zeros are not allowed"
    return None


def parse_fen(text: str, *, field: str | None = None, allow_negative: bool = False) -> int:
    """Parse a decimal yuan string such as ``"12.30"`` into integer fen (``1230``).

    Accepts ``"12.30"``, ``"12.3"``, ``"12"``, ``"0.05"`` and, when ``allow_negative`` is set,
    a leading ``"-"``. Everything else raises :class:`MoneyError` explaining why.
    """
    if not isinstance(text, str):
        raise MoneyError(
            f'amounts must be strings like "12.30", not {type(text).__name__}', field=field
        )
    match = _AMOUNT.fullmatch(text)
    reason = _diagnose(text, allow_negative)
    if match is None or reason is not None:
        raise _refuse(text, reason or "not a decimal amount like '12.30'", field)
    sign, whole, frac = match.groups()
    if len(whole) > len(str(MAX_FEN)):
        raise _refuse(text, f"magnitude exceeds {format_fen(MAX_FEN)}", field)
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if fen > MAX_FEN:
        raise _refuse(text, f"magnitude exceeds {format_fen(MAX_FEN)}", field)
    return -fen if sign else fen


def format_fen(fen: int) -> str:
    """Format integer fen as yuan with exactly two decimals: ``1230 -> "12.30"``."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise MoneyError(f"fen must be an int, not {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _check_currency(currency: object) -> None:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise MoneyError(f"currency must be 3 uppercase ASCII letters like 'CNY', got {currency!r}")


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of ``fen`` minor units in ``currency``."""

    fen: int
    currency: str = CNY

    def __post_init__(self) -> None:
        if not isinstance(self.fen, int) or isinstance(self.fen, bool):
            raise MoneyError(f"fen must be an int, not {type(self.fen).__name__}")
        _check_currency(self.currency)

    @classmethod
    def parse(
        cls,
        text: str,
        currency: str = CNY,
        *,
        field: str | None = None,
        allow_negative: bool = False,
    ) -> Money:
        """Parse ``text`` strictly (see :func:`parse_fen`) into Money in ``currency``."""
        return cls(parse_fen(text, field=field, allow_negative=allow_negative), currency)

    @classmethod
    def zero(cls, currency: str = CNY) -> Money:
        """Return zero in ``currency``."""
        return cls(0, currency)

    def format(self) -> str:
        """Return the amount with two decimals and no currency, e.g. ``"12.30"``."""
        return format_fen(self.fen)

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"

    @property
    def is_zero(self) -> bool:
        """True when the amount is exactly zero."""
        return self.fen == 0

    @property
    def is_positive(self) -> bool:
        """True when the amount is strictly greater than zero."""
        return self.fen > 0

    @property
    def is_negative(self) -> bool:
        """True when the amount is strictly less than zero."""
        return self.fen < 0

    def _same_currency(self, other: Money, op: str) -> None:
        if self.currency != other.currency:
            raise MoneyError(f"cannot {op} {self.currency} and {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.fen + other.fen, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.fen - other.fen, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.fen, self.currency)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.fen < other.fen

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.fen <= other.fen

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.fen > other.fen

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.fen >= other.fen
