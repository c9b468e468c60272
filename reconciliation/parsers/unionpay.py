"""UnionPay-style bank file (``unionpay``): ASCII, ``|``-separated H / D... / T records.

See docs/formats.md. Amounts are already integer fen. The header's record count and the
trailer's count and sums are checked against the detail records after they have been yielded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from itertools import starmap

from clearing.money import CNY, format_fen
from reconciliation.lines import LineKind, LineRow, StatementLine
from reconciliation.parsers._common import (
    StatementError,
    compact_date,
    compact_day,
    integer_fen,
    strict_lines,
)

SOURCE = "unionpay"
PAYMENT, REFUND = "01", "04"
SUCCESS = "00"


_FEN = r"(-?(?:0|[1-9][0-9]{0,14}))"
_DETAIL = re.compile(
    rf"D\|([^|]*)\|([^|]+)\|([0-9]{{14}})\|(01|04)\|{_FEN}\|{_FEN}\|{_FEN}\|00(?:\|([^|]*))?"
)
"""A well-formed detail record, read with one match (the usual case); anything else takes the
field-by-field path, which names the problem."""

Detail = tuple[str, str, int, int, int, date, LineKind, str]
"""order id, query id, txnAmt, fee, settleAmt, booked on, kind, refund id ("" if none)."""


def parse(data: bytes, filename: str | None = None) -> Iterator[StatementLine]:
    """Yield one :class:`StatementLine` per ``D`` record; check header and trailer at the end."""
    return starmap(StatementLine, rows(data, filename))


def rows(data: bytes, filename: str | None = None) -> Iterator[LineRow]:
    """:func:`parse`'s lines as plain tuples of :class:`StatementLine`'s fields (the bulk path:
    no object per line)."""
    lines = strict_lines(data, "ascii", filename, "ASCII")
    line_no = 0
    header: list[str] | None = None
    header_line = 1
    settle_date = None
    trailer: tuple[int, list[str]] | None = None
    count = amount_sum = fee_sum = settle_sum = 0
    match = _DETAIL.fullmatch
    for line_no, line in enumerate(lines, start=1):
        found = match(line) if header is not None and trailer is None else None
        detail = _fast(found) if found is not None else None
        if detail is None:
            if not line.strip():
                continue
            fields = line.split("|")
            record = fields[0]
            if header is None:
                if record != "H" or len(fields) != 4:
                    raise StatementError(
                        "first record must be the header H|merId|settleDate|recordCount",
                        filename=filename,
                        line=line_no,
                    )
                header = fields
                header_line = line_no
                settle_date = compact_date(fields[2], "settleDate", filename, line_no)
                if len(fields[2]) != 8:
                    raise StatementError(
                        f"settleDate is not yyyyMMdd: {fields[2]!r}",
                        filename=filename,
                        line=line_no,
                    )
                continue
            if trailer is not None:
                raise StatementError("record after the trailer", filename=filename, line=line_no)
            if record == "T":
                if len(fields) != 5:
                    raise StatementError(
                        "trailer must be T|count|txnAmt|fee|settleAmt",
                        filename=filename,
                        line=line_no,
                    )
                trailer = (line_no, fields)
                continue
            detail = _detail(fields, filename, line_no)
        order_id, query_id, amount, fee, settle, booked_on, kind, refund_id = detail
        count += 1
        amount_sum += amount
        fee_sum += fee
        settle_sum += settle
        yield (
            SOURCE,
            line_no,
            query_id,
            order_id or None,
            amount,
            fee,
            CNY,
            booked_on,
            settle_date,
            kind,
            "",
            None,
            refund_id or None,
            False,
        )
    last = line_no or None
    if header is None:
        raise StatementError("no header record (empty file)", filename=filename, line=last)
    if trailer is None:
        raise StatementError(
            "trailer record T is missing (truncated file?)", filename=filename, line=last
        )
    trailer_line, fields = trailer
    said = (
        integer_fen(fields[1], "count", filename, trailer_line, noun="a count"),
        integer_fen(fields[2], "sum txnAmt", filename, trailer_line),
        integer_fen(fields[3], "sum fee", filename, trailer_line),
        integer_fen(fields[4], "sum settleAmt", filename, trailer_line),
    )
    found = (count, amount_sum, fee_sum, settle_sum)
    for name, s, f in zip(
        ("count", "sum txnAmt", "sum fee", "sum settleAmt"), said, found, strict=True
    ):
        if s != f:
            shown = (str(s), str(f)) if name == "count" else (format_fen(s), format_fen(f))
            raise StatementError(
                f"trailer {name} is {shown[0]} but the details give {shown[1]}",
                filename=filename,
                line=trailer_line,
            )
    header_count = integer_fen(header[3], "recordCount", filename, header_line, noun="a count")
    if header_count != count:
        raise StatementError(
            f"header recordCount is {header_count} but the file has {count} details",
            filename=filename,
            line=header_line,
        )


def _fast(found: re.Match[str]) -> Detail | None:
    """The detail of a record :data:`_DETAIL` matched, if it passes every check; else None."""
    order_id, query_id, txn_time, txn_type, amt, fee_text, settle_text, refund_id = found.groups()
    amount, fee, settle = int(amt), int(fee_text), int(settle_text)
    booked_on = compact_day(txn_time[:8])
    if booked_on is None or settle != amount - fee:
        return None
    if txn_type == PAYMENT:
        if amount < 0 or refund_id:
            return None
        return order_id, query_id, amount, fee, settle, booked_on, LineKind.PAYMENT, ""
    if amount > 0 or not refund_id:
        return None
    return order_id, query_id, amount, fee, settle, booked_on, LineKind.REFUND, refund_id


def _detail(fields: list[str], filename: str | None, line_no: int) -> Detail:
    """A detail record checked field by field: raises naming the first problem."""
    if fields[0] != "D":
        raise StatementError(
            f"unknown record type {fields[0][:10]!r}", filename=filename, line=line_no
        )
    if len(fields) not in (9, 10):
        raise StatementError(
            f"detail record has {len(fields)} fields, expected 9 or 10",
            filename=filename,
            line=line_no,
        )
    order_id, query_id, txn_time, txn_type = fields[1:5]
    amount = integer_fen(fields[5], "txnAmt", filename, line_no)
    fee = integer_fen(fields[6], "fee", filename, line_no)
    settle = integer_fen(fields[7], "settleAmt", filename, line_no)
    resp_code = fields[8]
    refund_id = fields[9] if len(fields) == 10 else ""
    if not query_id:
        raise StatementError("queryId is empty", filename=filename, line=line_no)
    if len(txn_time) != 14 or not txn_time.isdigit():
        raise StatementError(
            f"txnTime is not yyyyMMddHHmmss: {txn_time!r}", filename=filename, line=line_no
        )
    booked_on = compact_date(txn_time, "txnTime", filename, line_no)
    if resp_code != SUCCESS:
        raise StatementError(
            f"respCode is {resp_code!r}, not {SUCCESS}", filename=filename, line=line_no
        )
    if settle != amount - fee:
        raise StatementError(
            f"settleAmt {settle} is not txnAmt {amount} minus fee {fee}",
            filename=filename,
            line=line_no,
        )
    if txn_type == PAYMENT:
        if amount < 0 or refund_id:
            raise StatementError(
                "a payment (txnType 01) must be positive, no refund id",
                filename=filename,
                line=line_no,
            )
        kind = LineKind.PAYMENT
    elif txn_type == REFUND:
        if amount > 0 or not refund_id:
            raise StatementError(
                "a refund (txnType 04) must be negative and carry refundOrderId",
                filename=filename,
                line=line_no,
            )
        kind = LineKind.REFUND
    else:
        raise StatementError(
            f"txnType {txn_type!r} is neither 01 nor 04", filename=filename, line=line_no
        )
    return order_id, query_id, amount, fee, settle, booked_on, kind, refund_id
