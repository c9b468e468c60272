"""ISO 20022 camt.053 bank-to-customer statements (``camt053``), versions 001.02 to 001.08.

Parsed with lxml hardened against XXE and entity expansion (no DTD loading, no entity
resolution, no network, no huge trees); a document carrying a DTD at all is refused.

- Only booked entries (``<Sts>BOOK</Sts>`` or, from 001.07 on, ``<Sts><Cd>BOOK</Cd></Sts>``).
- ``Amt`` is always positive; the sign comes from ``CdtDbtInd`` (CRDT +, DBIT -).
- ``RvslInd`` true marks ``reversal=True``; the line's own direction still comes from CdtDbtInd.
- A batch entry (``NtryDtls`` with several ``TxDtls``) becomes one line per transaction with that
  transaction's amount; the amounts must add up to the entry's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from lxml import etree

from reconciliation.lines import LineKind, StatementLine
from reconciliation.parsers._common import (
    SETTLEMENT_REFERENCE,
    StatementError,
    decimal_to_fen,
)

SOURCE = "camt053"
NAMESPACES = tuple(f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{v:02d}" for v in range(2, 9))
_AMOUNT = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,5})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )


class _Reader:
    """Namespace-aware lookups and errors that name the element and its line."""

    def __init__(self, ns: str, filename: str | None) -> None:
        self.ns = ns
        self.filename = filename

    def path(self, *names: str) -> str:
        return "/".join(f"{{{self.ns}}}{name}" for name in names)

    def find(self, element: etree._Element, *names: str) -> etree._Element | None:
        return element.find(self.path(*names))

    def findall(self, element: etree._Element, *names: str) -> list[etree._Element]:
        return element.findall(self.path(*names))

    def text(self, element: etree._Element, *names: str) -> str | None:
        found = self.find(element, *names)
        if found is None:
            return None
        return (found.text or "").strip()

    def error(self, element: etree._Element, where: str, problem: str) -> StatementError:
        return StatementError(problem, filename=self.filename, line=element.sourceline, path=where)

    def required(self, element: etree._Element, where: str, *names: str) -> str:
        value = self.text(element, *names)
        if not value:
            raise self.error(element, where, f"{'/'.join(names)} is missing or empty")
        return value

    def amount(self, element: etree._Element, where: str) -> tuple[int, str]:
        """``element`` is an ``Amt``: positive decimal text with a ``Ccy`` attribute."""
        text = (element.text or "").strip()
        if not _AMOUNT.fullmatch(text):
            raise self.error(element, where, f"Amt is not a positive amount: {text[:30]!r}")
        currency = element.get("Ccy", "")
        if not _CURRENCY.fullmatch(currency):
            raise self.error(element, where, f"Amt has no valid Ccy: {currency[:10]!r}")
        return decimal_to_fen(
            Decimal(text), "Amt", self.filename, element.sourceline, where
        ), currency

    def sign(self, element: etree._Element, where: str, default: int | None = None) -> int:
        indicator = self.text(element, "CdtDbtInd")
        if indicator is None and default is not None:
            return default
        if indicator == "CRDT":
            return 1
        if indicator == "DBIT":
            return -1
        raise self.error(element, where, f"CdtDbtInd is neither CRDT nor DBIT: {indicator!r}")

    def day(self, element: etree._Element, where: str, name: str) -> date | None:
        holder = self.find(element, name)
        if holder is None:
            return None
        text = self.text(holder, "Dt") or self.text(holder, "DtTm") or ""
        match = _ISO_DATE.match(text)
        try:
            if match is None:
                raise ValueError
            return date(*(int(g) for g in match.groups()))
        except ValueError:
            raise self.error(holder, where, f"{name} is not a date: {text[:30]!r}") from None


def _load(data: bytes, filename: str | None) -> etree._Element:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        message = " ".join(str(exc.msg or exc).split())[:160]
        raise StatementError(
            f"not well-formed XML: {message}", filename=filename, line=line
        ) from None
    except (ValueError, etree.LxmlError) as exc:
        raise StatementError(f"not an XML document: {str(exc)[:160]}", filename=filename) from None
    if root is None:
        raise StatementError("empty XML document", filename=filename)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise StatementError(
            "a DOCTYPE/DTD is not allowed in camt.053 (entities are refused)",
            filename=filename,
            line=1,
        )
    return root


def parse(data: bytes, filename: str | None = None) -> Iterator[StatementLine]:
    """Yield one :class:`StatementLine` per booked entry (per transaction for batches)."""
    root = _load(data, filename)
    ns = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "Document" or ns not in NAMESPACES:
        raise StatementError(
            f"root is {{{ns}}}{etree.QName(root).localname}, not a camt.053.001.02-08 Document",
            filename=filename,
            line=root.sourceline,
        )
    r = _Reader(ns, filename)
    container = r.find(root, "BkToCstmrStmt")
    if container is None:
        raise r.error(root, "Document", "BkToCstmrStmt is missing")
    statements = r.findall(container, "Stmt")
    if not statements:
        raise r.error(container, "BkToCstmrStmt", "no Stmt")
    for s_index, stmt in enumerate(statements, start=1):
        for e_index, entry in enumerate(r.findall(stmt, "Ntry"), start=1):
            yield from _entry(r, entry, f"Stmt[{s_index}]/Ntry[{e_index}]")


def _status(r: _Reader, entry: etree._Element, where: str) -> str:
    status = r.find(entry, "Sts")
    if status is None:
        raise r.error(entry, where, "Sts is missing")
    code = r.text(status, "Cd")
    return code if code is not None else (status.text or "").strip()


def _reference(r: _Reader, element: etree._Element) -> list[str]:
    parts = [(u.text or "").strip() for u in r.findall(element, "RmtInf", "Ustrd")]
    parts.append(r.text(element, "AddtlTxInf") or "")
    return [p for p in parts if p]


def _entry(r: _Reader, entry: etree._Element, where: str) -> Iterator[StatementLine]:
    if _status(r, entry, where) != "BOOK":
        return
    amt = r.find(entry, "Amt")
    if amt is None:
        raise r.error(entry, where, "Amt is missing")
    fen, currency = r.amount(amt, f"{where}/Amt")
    sign = r.sign(entry, where)
    reversal = (r.text(entry, "RvslInd") or "false").lower() in ("true", "1")
    booked_on = r.day(entry, where, "BookgDt")
    if booked_on is None:
        raise r.error(entry, where, "BookgDt is missing")
    value_on = r.day(entry, where, "ValDt")
    entry_ref = r.text(entry, "AcctSvcrRef") or r.text(entry, "NtryRef") or ""
    entry_info = r.text(entry, "AddtlNtryInf") or ""
    details = [tx for d in r.findall(entry, "NtryDtls") for tx in r.findall(d, "TxDtls")]

    def line(
        element: etree._Element, external_id: str, amount: int, refs: list[str], tx_currency: str
    ) -> StatementLine:
        if not external_id:
            raise r.error(element, where, "no AcctSvcrRef, NtryRef or transaction reference")
        reference = " ".join(refs)
        settlement = amount > 0 and not reversal and SETTLEMENT_REFERENCE.search(reference)
        return StatementLine(
            source=SOURCE,
            line_no=element.sourceline or 0,
            external_id=external_id,
            order_id=None,
            amount_fen=amount,
            fee_fen=0,
            currency=tx_currency,
            booked_on=booked_on,
            value_on=value_on,
            kind=LineKind.SETTLEMENT if settlement else LineKind.OTHER,
            reference=reference,
            reversal=reversal,
        )

    if len(details) <= 1:
        refs = _reference(r, details[0]) if details else []
        if entry_info and entry_info not in refs:
            refs.append(entry_info)
        tx_id = _tx_id(r, details[0]) if details else ""
        yield line(entry, entry_ref or tx_id, sign * fen, refs, currency)
        return
    total = 0
    for t_index, tx in enumerate(details, start=1):
        tx_where = f"{where}/NtryDtls/TxDtls[{t_index}]"
        tx_amt = r.find(tx, "Amt")
        if tx_amt is None:
            tx_amt = r.find(tx, "AmtDtls", "TxAmt", "Amt")
        if tx_amt is None:
            raise r.error(tx, tx_where, "batch transaction without Amt or AmtDtls/TxAmt/Amt")
        tx_fen, tx_currency = r.amount(tx_amt, f"{tx_where}/Amt")
        tx_sign = r.sign(tx, tx_where, default=sign)
        total += tx_sign * tx_fen
        tx_id = _tx_id(r, tx) or (f"{entry_ref}/{t_index}" if entry_ref else "")
        yield line(tx, tx_id, tx_sign * tx_fen, _reference(r, tx) or [entry_info], tx_currency)
    if total != sign * fen:
        raise r.error(
            entry, where, f"batch transactions add up to {total} fen, the entry says {sign * fen}"
        )


def _tx_id(r: _Reader, tx: etree._Element) -> str:
    for name in ("AcctSvcrRef", "EndToEndId", "TxId", "InstrId"):
        value = r.text(tx, "Refs", name)
        if value and value != "NOTPROVIDED":
            return value
    return ""
