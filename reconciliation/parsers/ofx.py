"""OFX bank statements (``ofx``): OFX 1.x SGML and OFX 2.x XML, through ofxparse, in linear time.

ofxparse alone is quadratic on SGML (``OfxPreprocessedFile`` tests every opening tag against a
*list* of every closing tag in the file) and slow in absolute terms (a BeautifulSoup
``html.parser`` tree plus a dozen ``find`` traversals: about 0.8 ms per transaction even when
linear). So feishui feeds it:

1. **Decode** with the declared encoding (OFX 1 ``ENCODING``/``CHARSET`` header, OFX 2 XML
   declaration), strictly: invalid bytes are an error naming the line.
2. **Pre-close** the SGML in one linear pass (a tokenizer with a stack): every element gets its
   end tag, so the result is well formed; unbalanced or truncated input is an error naming the
   line. Timezone brackets are dropped from ``DT*`` values (business dates are as written,
   Asia/Shanghai), and each ``STMTTRN`` is recorded with its line number. A ``STMTTRN`` made
   only of leaves (the usual case) is read by two regex scans instead of tag by tag; anything
   else in it falls back to the stack (a Hypothesis test checks both agree).
3. **ofxparse** then parses

   - ``strategy="fast"`` (default): the statement envelope (header, sign-on, account, balances:
     the whole document minus its ``STMTTRN`` elements) with ``OfxParser.parse``, and each
     transaction with ``OfxParser.parseTransaction`` over a light element built in step 2 (the
     same ``find``/``contents`` interface BeautifulSoup gives it). Same field semantics, about
     40 µs per transaction in all.
   - ``strategy="soup"``: the whole pre-closed document with ``OfxParser.parse``. Linear too
     (every tag now has a closing tag near the front of ofxparse's list), but with
     BeautifulSoup's constant factor.

Both yield the same lines; a test checks it.
"""

from __future__ import annotations

import codecs
import html
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ofxparse import OfxParser

from reconciliation.lines import LineKind, StatementLine
from reconciliation.parsers._common import (
    SETTLEMENT_REFERENCE,
    UTF8_BOM,
    StatementError,
    decimal_to_fen,
    decode_strict,
)

SOURCE = "ofx"
STRATEGIES = ("fast", "soup")

_TOKEN = re.compile(r"<([^<>]*)>")
_NAME = re.compile(r"[A-Za-z0-9_.]+")
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""")
_TZ = re.compile(r"\s*\[[^\]]*\]\s*$")
_DATE_TAGS = frozenset(
    {"DTPOSTED", "DTUSER", "DTAVAIL", "DTSTART", "DTEND", "DTASOF", "DTSERVER", "DTPROFUP"}
)
_STATEMENTS = ("STMTRS", "CCSTMTRS")
_CHARSETS = {
    "1252": "cp1252",
    "936": "gbk",
    "8859-1": "latin-1",
    "ISO-8859-1": "latin-1",
    "NONE": "ascii",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
}
_HEADER = (
    "OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\nENCODING:UTF-8\r\n"
    "CHARSET:NONE\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\nNEWFILEUID:NONE\r\n\r\n"
)
"""What ofxparse is fed: the body is always re-encoded as UTF-8 under this OFX 1 header."""


@dataclass(slots=True)
class _Open:
    name: str
    line: int
    """Offset of the start tag in the text (turned into a line number only for errors)."""
    text: str | None = None
    children: bool = False


@dataclass(slots=True)
class _Txn:
    """One ``STMTTRN`` seen by the tokenizer: where it is and its leaves (first one wins)."""

    line: int
    statement: int
    leaves: dict[str, str] = field(default_factory=dict)
    start: int = 0
    end: int = 0
    offset: int = 0
    """Offset of ``<STMTTRN>`` in the decoded text."""


@dataclass(slots=True)
class _Document:
    body: list[str]
    transactions: list[_Txn]
    currencies: list[str]
    kinds: list[str]


def decode(data: bytes, filename: str | None) -> tuple[str, int]:
    """The statement as text (honouring its declared encoding) and the line its body starts on.

    OFX 1 headers (``KEY:VALUE`` lines before the first ``<``) are returned stripped; OFX 2
    keeps its ``<?xml?>``/``<?OFX?>`` processing instructions, which the tokenizer skips.
    """
    raw = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    head = raw.lstrip()
    if head.startswith(b"<?xml") or head.startswith(b"<"):
        match = _XML_ENCODING.match(head)
        encoding = match.group(1).decode("ascii") if match else "utf-8"
        if data.startswith(UTF8_BOM):
            encoding = "utf-8"
        codec = _codec(encoding, filename, f'encoding="{encoding}"')
        return decode_strict(raw, codec, filename, f"declared {encoding}"), 1
    start = raw.find(b"<")
    if start < 0:
        raise StatementError("no OFX body (no '<' found)", filename=filename)
    header_bytes = raw[:start]
    try:
        header_text = header_bytes.decode("ascii")
    except UnicodeDecodeError as exc:
        raise StatementError(
            "OFX header is not ASCII",
            filename=filename,
            line=header_bytes.count(b"\n", 0, exc.start) + 1,
        ) from None
    headers: dict[str, str] = {}
    for number, line in enumerate(header_text.splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise StatementError(
                f"OFX header line is not KEY:VALUE: {line[:40]!r}", filename=filename, line=number
            )
        headers[key.strip().upper()] = value.strip().upper()
    if "OFXHEADER" not in headers:
        raise StatementError("OFXHEADER header is missing", filename=filename, line=1)
    enc = headers.get("ENCODING", "USASCII")
    charset = headers.get("CHARSET", "NONE")
    if enc in ("UTF-8", "UNICODE", "UTF8"):
        encoding, label = "utf-8", f"ENCODING:{enc}"
    elif enc == "USASCII":
        encoding = _CHARSETS.get(charset, charset)
        label = f"CHARSET:{charset}"
        if not _lookup(encoding) and _lookup(f"cp{charset}"):
            encoding = f"cp{charset}"
    else:
        raise StatementError(f"unknown OFX ENCODING:{enc}", filename=filename, line=1)
    codec = _codec(encoding, filename, label)
    body_line = header_bytes.count(b"\n") + 1
    body = decode_strict(
        raw[start:], codec, filename, f"declared {label} ({codec})", first_line=body_line
    )
    return body, body_line


def _lookup(name: str) -> bool:
    try:
        return bool(getattr(codecs.lookup(name), "_is_text_encoding", True))
    except (LookupError, ValueError, TypeError):
        return False


def _codec(name: str, filename: str | None, label: str) -> str:
    if not _lookup(name):
        raise StatementError(f"unknown declared encoding {label}", filename=filename, line=1)
    return codecs.lookup(name).name


def tokenize(
    text: str, first_line: int, filename: str | None, *, keep_transactions: bool = True
) -> _Document:
    """Close every SGML element in one pass; record transactions; refuse unbalanced input.

    With ``keep_transactions=False`` the ``STMTTRN`` elements are left out of ``body`` (the
    fast path reads them from their recorded leaves instead).
    """
    body: list[str] = []
    out = body.append
    stack: list[_Open] = []
    transactions: list[_Txn] = []
    currencies: list[str] = []
    kinds: list[str] = []
    txn: _Txn | None = None
    counted = [0, first_line]  # position up to which newlines are counted, line there

    def line_at(offset: int) -> int:
        if offset < counted[0]:
            return first_line + text.count("\n", 0, offset)
        counted[1] += text.count("\n", counted[0], offset)
        counted[0] = offset
        return counted[1]

    def fail(problem: str, offset: int) -> StatementError:
        return StatementError(problem, filename=filename, line=line_at(offset))

    def close_top() -> None:
        nonlocal txn
        top = stack.pop()
        if txn is None or keep_transactions:
            out(f"</{top.name}>")
        if top.name == "STMTTRN" and txn is not None:
            txn.end = len(body)
            transactions.append(txn)
            txn = None
        elif top.name == "CURDEF" and stack and stack[-1].name in _STATEMENTS:
            currencies[-1] = (top.text or "").upper()

    pos = 0
    seen_root = done = False
    tags: dict[str, tuple[bool, str, bool]] = {}
    search = _TOKEN.search
    while (match := search(text, pos)) is not None:
        start = match.start()
        if start > pos:
            value = text[pos:start].strip()
            if value:
                if not stack:
                    raise fail(f"text outside <OFX>: {value[:30]!r}", pos)
                top = stack[-1]
                if top.children or top.text is not None:
                    raise fail(f"text after child elements in <{top.name}>", pos)
                if top.name in _DATE_TAGS:
                    value = _TZ.sub("", value)
                top.text = value
                if txn is None:
                    out(value)
                else:
                    if keep_transactions:
                        out(value)
                    key = top.name.lower()
                    if key not in txn.leaves:
                        txn.leaves[key] = value
        pos = match.end()
        token = match.group(1)
        tag = tags.get(token)
        if tag is None:
            first = token[:1]
            if first == "?" or first == "!":
                if token.startswith("!--"):
                    continue
                if seen_root:
                    raise fail(f"unexpected <{token[:20]}> inside the body", start)
                continue
            tag = _parse_tag(token)
            if tag is None:
                raise fail(f"malformed tag <{token[:30]}>", start)
            if len(tags) < 10_000:
                tags[token] = tag
        closing, name, empty = tag
        if done:
            raise fail(f"<{token[:30]}> after </OFX>", start)
        if stack and stack[-1].text is not None and (not closing or stack[-1].name != name):
            close_top()  # an SGML leaf: its end tag is implied by the next tag
        if closing:
            if stack and stack[-1].name == name:
                close_top()
            else:
                _close(name, stack, close_top, lambda problem, at=start: fail(problem, at))
            if not stack:
                done = True
            continue
        if not stack:
            if seen_root or name != "OFX":
                raise fail(f"the document must start with <OFX>, not <{name}>", start)
            seen_root = True
        else:
            stack[-1].children = True
        if name == "STMTTRN":
            if txn is not None or not currencies:
                raise fail("<STMTTRN> outside a bank statement", start)
            txn = _Txn(
                line=line_at(start), statement=len(currencies) - 1, start=len(body), offset=start
            )
        elif name in _STATEMENTS:
            currencies.append("")
            kinds.append(name)
        elif name == "INVSTMTRS":
            raise fail("investment statements are not supported", start)
        stack.append(_Open(name, start))
        if txn is None or keep_transactions:
            out(f"<{name}>")
        if empty:
            close_top()
        elif txn is not None and not keep_transactions and name == "STMTTRN":
            end = _flat_transaction(text, pos, txn.leaves)
            if end is not None:
                stack[-1].children = True
                close_top()
                pos = end
    tail = text[pos:].strip()
    if tail and stack and not stack[-1].children and stack[-1].text is None:
        stack[-1].text = tail  # a leaf cut short: report its parent as unclosed
    elif tail and not stack:
        raise fail(f"text after the last tag: {tail[:30]!r}", pos)
    if stack and stack[-1].text is not None:
        close_top()
    if stack:
        raise fail(
            f"truncated: <{stack[-1].name}> opened on line "
            f"{line_at(stack[-1].line)} is never closed",
            len(text),
        )
    if not seen_root:
        raise fail("no <OFX> element", len(text))
    return _Document(body, transactions, currencies, kinds)


_LEAF = re.compile(r"<([A-Za-z0-9_.]+)>([^<]*)(</\1>)?([^<]*)")
_STMTTRN_END = "</STMTTRN>"
_SPECIAL = frozenset({"STMTTRN", "INVSTMTRS", *_STATEMENTS})
"""Tags the general tokenizer treats specially: never read as leaves."""


def _flat_transaction(text: str, pos: int, leaves: dict[str, str]) -> int | None:
    """Read a ``STMTTRN`` made only of leaves (the usual case) with two C-speed scans.

    ``pos`` is just after ``<STMTTRN>``. Returns the offset after ``</STMTTRN>`` with ``leaves``
    filled, or None (``leaves`` untouched) when the element has anything else in it (nested
    aggregates, empty or mismatched elements, comments, stray text, no end tag): the general
    tokenizer then reads it and reports what is wrong.
    """
    end = text.find(_STMTTRN_END, pos)
    if end < 0:
        return None
    block = text[pos:end].lstrip()
    found: dict[str, str] = {}
    covered = 0
    for name, value, closing, tail in _LEAF.findall(block):
        covered += len(name) + 2 + len(value) + len(closing) + len(tail)
        value = value.strip()
        if not value or (tail and (not closing or not tail.isspace())):
            return None
        upper = name.upper()
        if upper in _SPECIAL:
            return None
        if upper in _DATE_TAGS:
            value = _TZ.sub("", value)
        found.setdefault(upper.lower(), value)
    if covered != len(block):
        return None
    leaves.update(found)
    return end + len(_STMTTRN_END)


def _parse_tag(token: str) -> tuple[bool, str, bool] | None:
    """``(closing, NAME, empty)`` of a tag's inside (``/TRNAMT``, ``MEMO/``), None if malformed."""
    closing = token.startswith("/")
    name = token[1:].strip() if closing else token.strip()
    empty = not closing and name.endswith("/")
    if empty:
        name = name[:-1].strip()
    if not _NAME.fullmatch(name):
        return None
    return closing, name.upper(), empty


def _close(
    name: str,
    stack: list[_Open],
    close_top: Callable[[], None],
    fail: Callable[[str], StatementError],
) -> None:
    """Close ``name``; empty SGML elements between it and the top close implicitly."""
    depth = len(stack) - 1
    while depth >= 0 and stack[depth].name != name:
        if stack[depth].children or stack[depth].text is not None:
            depth = -1
            break
        depth -= 1
    if depth < 0:
        expected = f"</{stack[-1].name}>" if stack else "nothing"
        raise fail(f"unexpected </{name}>, expected {expected}")
    while len(stack) > depth:
        close_top()


class _Leaf:
    """What ofxparse reads from a BeautifulSoup tag: ``.contents[0]``."""

    __slots__ = ("contents",)

    def __init__(self, text: str) -> None:
        self.contents = [text]


class _Element:
    """What ofxparse's ``parseTransaction`` calls on a ``STMTTRN`` tag: ``find(name)``."""

    __slots__ = ("leaves",)

    def __init__(self, leaves: dict[str, str]) -> None:
        self.leaves = leaves

    def find(self, name: str) -> _Leaf | None:
        text = self.leaves.get(name)
        if text is None:
            return None
        return _Leaf(html.unescape(text) if "&" in text else text)


def _ofxparse(text: str, filename: str | None, line: int | None) -> Any:
    try:
        return OfxParser.parse(io.BytesIO((_HEADER + text).encode("utf-8")))
    except Exception as exc:  # ofxparse raises anything from IndexError to ValueError
        raise StatementError(
            f"ofxparse refused the statement: {_describe(exc)}", filename=filename, line=line
        ) from None


def _describe(exc: Exception) -> str:
    message = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def parse(
    data: bytes, filename: str | None = None, *, strategy: str = "fast"
) -> Iterator[StatementLine]:
    """Yield one :class:`StatementLine` per ``STMTTRN``, in linear time."""
    if strategy not in STRATEGIES:
        raise StatementError(f"unknown OFX strategy {strategy!r}", filename=filename)
    text, first_line = decode(data, filename)
    doc = tokenize(text, first_line, filename, keep_transactions=strategy == "soup")
    if strategy == "soup":
        yield from _parse_soup(doc, filename)
        return
    ofx = _ofxparse("".join(doc.body), filename, None)
    _check_envelope(ofx, doc, filename)
    for txn in doc.transactions:
        try:
            parsed = OfxParser.parseTransaction(_Element(txn.leaves))
        except Exception as exc:  # ofxparse raises anything from IndexError to ValueError
            problem = _describe(exc)
            raise StatementError(
                f"STMTTRN refused by ofxparse: {problem}",
                filename=filename,
                line=_field_line(text, txn, problem),
            ) from None
        yield _line(parsed, txn, doc.currencies[txn.statement], filename)


_FIELDS = (
    ("User Date", "DTUSER"),
    ("Date", "DTPOSTED"),
    ("Amount", "TRNAMT"),
    ("FIT", "FITID"),
    ("type", "TRNTYPE"),
    ("name", "NAME"),
)


def _field_line(text: str, txn: _Txn, problem: str) -> int:
    """The line of the field ofxparse complained about, else the ``STMTTRN``'s line."""
    for word, tag in _FIELDS:
        if word in problem:
            at = text.find(f"<{tag}>", txn.offset)
            if at >= 0 and not 0 <= text.find("</STMTTRN>", txn.offset) < at:
                return txn.line + text.count("\n", txn.offset, at)
            break
    return txn.line


def _check_envelope(ofx: Any, doc: _Document, filename: str | None) -> None:
    status = getattr(ofx, "status", None)
    if status and status.get("code") not in (0, None):
        raise StatementError(
            f"the bank reports status code {status.get('code')}", filename=filename
        )
    if len(ofx.accounts) != len(doc.currencies):
        raise StatementError(
            f"ofxparse found {len(ofx.accounts)} statements, the file has {len(doc.currencies)}",
            filename=filename,
        )
    for account, i in zip(ofx.accounts, _account_order(doc), strict=True):
        if not doc.currencies[i] and account.statement is not None:
            doc.currencies[i] = (account.statement.currency or "").upper()


def _account_order(doc: _Document) -> list[int]:
    """Our statement index of each ofxparse account: it lists STMTRS first, then CCSTMTRS."""
    return [i for k in _STATEMENTS for i, kind in enumerate(doc.kinds) if kind == k]


def _parse_soup(doc: _Document, filename: str | None) -> Iterator[StatementLine]:
    ofx = _ofxparse("".join(doc.body), filename, None)
    _check_envelope(ofx, doc, filename)
    order = _account_order(doc)
    by_statement: dict[int, list[_Txn]] = {i: [] for i in range(len(doc.kinds))}
    for txn in doc.transactions:
        by_statement[txn.statement].append(txn)
    for account, index in zip(ofx.accounts, order, strict=True):
        parsed_list = account.statement.transactions if account.statement else []
        ours = by_statement[index]
        if len(parsed_list) != len(ours):
            raise StatementError(
                f"ofxparse returned {len(parsed_list)} transactions, the file has {len(ours)}",
                filename=filename,
            )
        for parsed, txn in zip(parsed_list, ours, strict=True):
            yield _line(parsed, txn, doc.currencies[index], filename)


def _line(parsed: Any, txn: _Txn, currency: str, filename: str | None) -> StatementLine:
    amount = parsed.amount
    if not isinstance(amount, Decimal):
        amount = Decimal(int(amount or 0))
    fen = decimal_to_fen(amount, "TRNAMT", filename, txn.line)
    if parsed.date is None:
        raise StatementError("DTPOSTED is empty", filename=filename, line=txn.line)
    # the timezone bracket was stripped before ofxparse saw it: this is the date as written
    booked_on = parsed.date.date() if isinstance(parsed.date, datetime) else parsed.date
    if not parsed.id:
        raise StatementError("FITID is empty", filename=filename, line=txn.line)
    if not currency or len(currency) != 3:
        raise StatementError(
            f"statement currency CURDEF is {currency!r}", filename=filename, line=txn.line
        )
    reference = " ".join(part for part in (parsed.payee, parsed.memo) if part)
    settlement = fen > 0 and SETTLEMENT_REFERENCE.search(reference) is not None
    return StatementLine(
        source=SOURCE,
        line_no=txn.line,
        external_id=parsed.id,
        order_id=None,
        amount_fen=fen,
        fee_fen=0,
        currency=currency,
        booked_on=booked_on,
        value_on=None,
        kind=LineKind.SETTLEMENT if settlement else LineKind.OTHER,
        reference=reference,
    )
