"""Payment codes (缴款码) printed on payment notices.

A code is 20 ASCII digits::

    RRRRRR YY NNNNNNNNNNN C
    region  year  random  check

* ``RRRRRR`` — the 6-digit administrative region code of the collecting authority;
* ``YY`` — the last two digits of the year the notice was issued;
* ``N…`` — 11 digits from a CSPRNG (``secrets``), so codes cannot be guessed or enumerated;
* ``C`` — a Damm check digit over the first 19 digits. Damm detects every single-digit
  substitution and every transposition of two adjacent digits, the two errors people make
  most when typing a code at a bank counter or into a phone.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import lru_cache

from clearing.errors import ValidationError

CODE_LENGTH = 20
RANDOM_DIGITS = 11
_SEPARATORS = re.compile(r"[\s\-]+")
_DIGITS = re.compile(r"[0-9]+")
_REGION = re.compile(r"[0-9]{6}")
#: The Damm quasigroup of order 10 (Damm 2004), as ``python-stdnum`` and the literature give
#: it; each row maps an ASCII digit to the next interim digit.
_DAMM_TABLE = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_DAMM_ROWS = tuple({str(digit): to for digit, to in enumerate(row)} for row in _DAMM_TABLE)


class PaymentCodeError(ValidationError):
    """A payment code is malformed or its check digit does not match."""

    type = "invalid-payment-code"


def generate_code(region: str, year: int, *, rng: Callable[[int], int] | None = None) -> str:
    """Return a new payment code for ``region`` (6 digits) issued in ``year`` (4 digits).

    ``rng(n)`` must return an integer in ``[0, n)``; it defaults to :func:`secrets.randbelow`
    and is only injectable for tests. Uniqueness is the caller's job (a unique index);
    with 10**11 random values per region and year collisions are rare but possible.
    """
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ValidationError("region must be a 6-digit region code", field="region")
    if isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 9999:
        raise ValidationError("year must be a 4-digit year", field="year")
    prefix, interim = _prefix(region, year)
    draw = rng if rng is not None else secrets.randbelow
    random_part = draw(10**RANDOM_DIGITS)
    if not 0 <= random_part < 10**RANDOM_DIGITS:
        raise ValueError("rng returned a value out of range")
    digits = f"{random_part:0{RANDOM_DIGITS}d}"
    return prefix + digits + str(damm_checksum(digits, interim))


@lru_cache(maxsize=256)
def _prefix(region: str, year: int) -> tuple[str, int]:
    """The first 8 digits of a code (a valid region and year) and their Damm interim digit,
    computed once: a batch draws thousands of codes with the same prefix."""
    prefix = f"{region}{year % 100:02d}"
    return prefix, damm_checksum(prefix)


def damm_checksum(digits: str, interim: int = 0) -> int:
    """The Damm interim digit of ASCII ``digits``: 0 when a trailing check digit matches, and
    the check digit to append otherwise (the table has a zero diagonal).

    ``interim`` continues from the interim digit of preceding digits.
    """
    for digit in digits:
        interim = _DAMM_ROWS[interim][digit]
    return interim


def _normalise(code: str) -> str:
    """Strip the spaces and hyphens people type between digit groups."""
    return _SEPARATORS.sub("", code)


def validate_code(code: str) -> str:
    """Return ``code`` normalised (no spaces or hyphens) or raise :class:`PaymentCodeError`."""
    if not isinstance(code, str):
        raise PaymentCodeError("payment code must be a string", field="payment_code")
    compact = _normalise(code)
    if len(compact) != CODE_LENGTH or not _DIGITS.fullmatch(compact):
        raise PaymentCodeError(f"payment code must be {CODE_LENGTH} digits", field="payment_code")
    if damm_checksum(compact) != 0:
        raise PaymentCodeError(
            "check digit does not match: a digit was probably mistyped", field="payment_code"
        )
    return compact


def is_valid_code(code: str) -> bool:
    """Return whether ``code`` (separators allowed) is a well-formed payment code."""
    try:
        validate_code(code)
    except PaymentCodeError:
        return False
    return True


def format_code(code: str) -> str:
    """Return a valid code in groups of 4 digits separated by spaces, for print."""
    compact = validate_code(code)
    return " ".join(compact[i : i + 4] for i in range(0, CODE_LENGTH, 4))
