"""Statement parsers: gateway bills and bank statements in, :class:`StatementLine` out.

``parse(data, format=None, filename=None)`` detects the format (unless given) and returns an
iterator that yields lines as it reads them. Totals, footers and trailers can only be checked at
the end, so the iterator may raise :class:`StatementError` *after* yielding lines: a caller that
stores lines as they stream must do it in one transaction and roll back on that error.

Formats (docs/formats.md, docs/reconciliation.md): ``alipay``, ``wechatpay``, ``unionpay``,
``ofx``, ``camt053``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from reconciliation.lines import LineRow, StatementLine, line_row
from reconciliation.parsers import alipay, camt053, ofx, unionpay, wechatpay
from reconciliation.parsers._common import UTF8_BOM, StatementError

__all__ = ["FORMATS", "StatementError", "detect_format", "parse", "parse_rows"]

Parser = Callable[[bytes, "str | None"], Iterator[StatementLine]]

FORMATS: dict[str, Parser] = {
    "alipay": alipay.parse,
    "wechatpay": wechatpay.parse,
    "unionpay": unionpay.parse,
    "ofx": ofx.parse,
    "camt053": camt053.parse,
}

ROWS: dict[str, Callable[[bytes, str | None], Iterator[LineRow]]] = {"unionpay": unionpay.rows}
"""Formats whose parser has a bulk path yielding :data:`~reconciliation.lines.LineRow` tuples."""

_HEAD = 4096
_CAMT_NS = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.053\.")
_OFX_SGML = re.compile(rb"\s*OFXHEADER\s*:")
_OFX_XML = re.compile(rb"<\?OFX\b|<OFX>", re.IGNORECASE)


def _heads(head: bytes) -> list[str]:
    """The head decoded leniently both ways (a cut multi-byte character must not matter)."""
    return [head.decode("utf-8", "ignore"), head.decode("gb18030", "ignore")]


def detect_format(data: bytes, filename: str | None = None) -> str:
    """Name the format of ``data`` by sniffing its content (the filename is only for errors)."""
    head = data[:_HEAD]
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    stripped = head.lstrip()
    if _OFX_SGML.match(head):
        return "ofx"
    if stripped.startswith(b"<"):
        if b"<Document" in head and _CAMT_NS.search(head):
            return "camt053"
        if _OFX_XML.search(head):
            return "ofx"
    if stripped.startswith(b"H|"):
        return "unionpay"
    for text in _heads(head):
        first = text.lstrip().split("\n", 1)[0]
        if first.startswith("#支付宝") or (text.startswith("#") and "\n支付宝交易号" in text):
            return "alipay"
        if first.startswith("交易时间") and "\n`" in text:
            return "wechatpay"
    raise StatementError(
        "unknown statement format (not an Alipay, WeChat Pay or UnionPay bill, OFX or camt.053)",
        filename=filename,
    )


def parse(
    data: bytes, *, format: str | None = None, filename: str | None = None
) -> Iterator[StatementLine]:
    """Detect (or take) the format and return an iterator of the file's lines.

    Raises :class:`StatementError` for an unknown format at once; errors inside the file are
    raised while iterating, the footer/trailer checks after the last line.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StatementError("statement data must be bytes", filename=filename)
    data = bytes(data)
    name = format or detect_format(data, filename)
    parser = FORMATS.get(name)
    if parser is None:
        raise StatementError(
            f"unknown format {name!r}; known: {', '.join(FORMATS)}", filename=filename
        )
    return parser(data, filename)


def parse_rows(data: bytes, *, format: str, filename: str | None = None) -> Iterator[LineRow]:
    """:func:`parse` as :data:`~reconciliation.lines.LineRow` tuples (same lines, same checks,
    same errors), for bulk loading: formats with a bulk path build no object per line."""
    bulk = ROWS.get(format)
    if bulk is None:
        return map(line_row, parse(data, format=format, filename=filename))
    return bulk(bytes(data), filename)
