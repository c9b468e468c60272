"""What every statement parser shares: the error, decoding, amounts, dates and small helpers.

Nothing here ever goes through ``float``: amounts are parsed from their decimal text into integer
fen (or an exact :class:`~decimal.Decimal` for sub-fen fees).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from clearing.errors import ValidationError
from clearing.money import MAX_FEN, MoneyError, parse_fen

UTF8_BOM = codecs.BOM_UTF8
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) [0-9]{2}:[0-9]{2}:[0-9]{2}")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
SETTLEMENT_REFERENCE = re.compile(r"\bSETTLE (?:ALIPAY|WECHATPAY|UNIONPAY) [0-9]{8}\b")
"""A bank line whose reference names a gateway settlement, e.g. ``SETTLE ALIPAY 20261127``."""


class StatementError(ValidationError):
    """A settlement file or bank statement is broken, truncated, mis-encoded or unknown.

    ``detail`` names the file, the line (or element) and the problem, e.g.
    ``alipay_x_20261127.csv line 7: column 商家实收（元） is not an amount: '26o.00'``.
    """

    type = "invalid-statement"

    def __init__(
        self,
        problem: str,
        *,
        filename: str | None = None,
        line: int | None = None,
        path: str | None = None,
    ) -> None:
        where = filename or "<statement>"
        if line is not None:
            where += f" line {line}"
        if path:
            where += f" ({path})"
        super().__init__(f"{where}: {problem}", field="file")
        self.problem = problem
        self.filename = filename
        self.line = line
        self.path = path


def line_of_offset(data: bytes, offset: int) -> int:
    """1-based line number of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def decode_strict(
    data: bytes, encoding: str, filename: str | None, label: str, *, first_line: int = 1
) -> str:
    """Decode ``data`` with ``encoding`` or raise naming the line of the first invalid byte.

    ``first_line`` is the file's line number of ``data``'s first line (when it is a tail).
    """
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StatementError(
            f"invalid bytes {data[exc.start : exc.start + 4]!r} for the {label} encoding",
            filename=filename,
            line=line_of_offset(data, exc.start) + first_line - 1,
        ) from None
    except LookupError:
        raise StatementError(f"unknown encoding {encoding!r}", filename=filename) from None


CHUNK = 1 << 20
"""Bytes decoded at a time by :func:`text_lines` (cut at a newline: ``\\n`` is never part of a
multi-byte character in ASCII, UTF-8 or GB18030, so a chunk decodes as the whole file would)."""

Fail = Callable[[int], StatementError]
"""Builds the error for an undecodable byte at an offset of the file."""


def _chunks(data: bytes, start: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges of about :data:`CHUNK` bytes, each ending after a newline (or at
    the end of ``data``)."""
    size = len(data)
    while start < size:
        end = data.find(b"\n", min(start + CHUNK, size) - 1)
        end = size if end < 0 else end + 1
        yield start, end
        start = end


def first_undecodable(data: bytes, encoding: str, start: int = 0) -> int | None:
    """Offset of the first byte ``encoding`` cannot decode, or None; chunk by chunk (the text
    is thrown away: bounded memory)."""
    view = memoryview(data)
    for lo, hi in _chunks(data, start):
        try:
            str(view[lo:hi], encoding)
        except UnicodeDecodeError as exc:
            return lo + exc.start
    return None


def text_lines(data: bytes, encoding: str, fail: Fail, start: int = 0) -> Iterator[str]:
    """The physical lines of ``data[start:]`` without their ``\\r\\n`` / ``\\n`` endings (a final
    newline adds nothing; only ``\\n`` ends a line), decoded chunk by chunk as they are read, in
    bounded memory. Undecodable bytes raise ``fail(offset)`` when they are reached, after the
    lines before them."""
    view = memoryview(data)
    for lo, hi in _chunks(data, start):
        try:
            text = str(view[lo:hi], encoding)
        except UnicodeDecodeError as exc:
            raise fail(lo + exc.start) from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        for line in lines:
            yield line[:-1] if line.endswith("\r") else line


def strict_lines(
    data: bytes, encoding: str, filename: str | None, label: str, start: int = 0
) -> Iterator[str]:
    """:func:`text_lines` with :func:`decode_strict`'s error for an undecodable byte."""

    def fail(offset: int) -> StatementError:
        return StatementError(
            f"invalid bytes {data[offset : offset + 4]!r} for the {label} encoding",
            filename=filename,
            line=line_of_offset(data, offset),
        )

    return text_lines(data, encoding, fail, start)


def bill_lines(data: bytes, filename: str | None, *, allow_gbk: bool = True) -> Iterator[str]:
    """A wallet bill's lines, decoded as they are read: UTF-8 BOM, else strict UTF-8, else (if
    allowed and the file is not valid UTF-8) GB18030 (a superset of GBK).

    Choosing between UTF-8 and GB18030 takes one pass over the bytes (chunk by chunk, the text
    discarded; a GBK file fails UTF-8 at its first Chinese character) before the first line. An
    invalid byte for GB18030 is raised when it is reached; when neither encoding decodes, the
    error names the first bad byte of the encoding that got further."""
    if data.startswith(UTF8_BOM):
        return strict_lines(data, "utf-8", filename, "UTF-8", len(UTF8_BOM))
    if not allow_gbk:
        return strict_lines(data, "utf-8", filename, "UTF-8")
    utf8_error = first_undecodable(data, "utf-8")
    if utf8_error is None:
        return text_lines(data, "utf-8", _never)

    def fail(offset: int) -> StatementError:
        bad, label = (offset, "GBK/GB18030") if offset >= utf8_error else (utf8_error, "UTF-8")
        return StatementError(
            f"invalid bytes {data[bad : bad + 4]!r} for the {label} encoding "
            "(neither valid UTF-8 nor GBK)",
            filename=filename,
            line=line_of_offset(data, bad),
        )

    return text_lines(data, "gb18030", fail)


def _never(offset: int) -> StatementError:  # pragma: no cover - the bytes were checked first
    raise AssertionError(f"undecodable byte at {offset} after a successful check")


def csv_cells(line: str, filename: str | None, line_no: int) -> list[str]:
    """The comma-separated cells of one line (quoted cells only when there is a quote)."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise StatementError(f"malformed CSV: {exc}", filename=filename, line=line_no) from None


def yuan_to_fen(text: str, column: str, filename: str | None, line: int) -> int:
    """A signed yuan amount with at most two decimals (``"-260.00"``) as integer fen."""
    try:
        return parse_fen(text, field=column, allow_negative=True)
    except MoneyError:
        raise StatementError(
            f"column {column} is not an amount: {text!r}", filename=filename, line=line
        ) from None


def integer_fen(
    text: str, column: str, filename: str | None, line: int, *, noun: str = "an amount in fen"
) -> int:
    """An amount already written as a signed integer of fen (``"-460000"``), or a count."""
    if text.isdigit() and text.isascii() and len(text) <= 15 and (text[0] != "0" or text == "0"):
        return int(text)  # the usual case, without the regex: 0 or no leading zero, < MAX_FEN
    if len(text) <= 20 and _INTEGER.fullmatch(text):
        value = int(text)
        if -MAX_FEN <= value <= MAX_FEN:
            return value
    raise StatementError(f"field {column} is not {noun}: {text!r}", filename=filename, line=line)


def exact_decimal(text: str, column: str, filename: str | None, line: int) -> Decimal:
    """A signed plain decimal (any number of places), exactly, e.g. ``"0.72000"``."""
    if not _DECIMAL.fullmatch(text) or len(text) > 40:
        raise StatementError(
            f"column {column} is not an amount: {text!r}", filename=filename, line=line
        )
    value = Decimal(text)
    if abs(value) * 100 > MAX_FEN:
        raise StatementError(
            f"column {column} is too large: {text!r}", filename=filename, line=line
        )
    return value


def round_fen(yuan: Decimal) -> int:
    """Exact yuan rounded half-up (away from zero at .5) to integer fen."""
    return int((yuan * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal_to_fen(
    value: Decimal, what: str, filename: str | None, line: int | None, path: str | None = None
) -> int:
    """An exact Decimal yuan amount as fen; refuses non-finite values and sub-fen precision."""
    try:
        if not value.is_finite():
            raise InvalidOperation
        fen = value.scaleb(2)
        if fen != fen.to_integral_value() or abs(fen) > MAX_FEN:
            raise InvalidOperation
    except InvalidOperation:
        raise StatementError(
            f"{what} is not an amount in whole fen: {str(value)!r}",
            filename=filename,
            line=line,
            path=path,
        ) from None
    return int(fen)


@lru_cache(maxsize=4096)
def _ymd(year: str, month: str, day: str) -> date | None:
    """A real calendar date, or None (cached: a bill has few distinct days)."""
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def iso_date(
    text: str, column: str, filename: str | None, line: int, *, with_time: bool = False
) -> date:
    """``YYYY-MM-DD`` (or ``YYYY-MM-DD HH:MM:SS`` when ``with_time``) as a real date."""
    match = (_DATETIME if with_time else _DATE).fullmatch(text)
    day = _ymd(*match.groups()) if match is not None else None
    if day is None:
        shape = "a date-time YYYY-MM-DD HH:MM:SS" if with_time else "a date YYYY-MM-DD"
        raise StatementError(
            f"column {column} is not {shape}: {text!r}", filename=filename, line=line
        )
    return day


@lru_cache(maxsize=4096)
def compact_day(head: str) -> date | None:
    """The date of ``yyyyMMdd`` (exactly 8 digits), or None; cached."""
    match = _COMPACT_DATE.fullmatch(head)
    return _ymd(*match.groups()) if match is not None else None


def compact_date(
    text: str, column: str, filename: str | None, line: int | None, path: str | None = None
) -> date:
    """The date in the first 8 digits of ``yyyyMMdd[HHmmss...]``."""
    day = compact_day(text[:8])
    if day is None:
        raise StatementError(
            f"{column} is not a date yyyyMMdd: {text!r}", filename=filename, line=line, path=path
        )
    return day
