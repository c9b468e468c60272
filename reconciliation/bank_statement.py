"""The development source of the fiscal account's bank statement (camt.053).

In production the bank delivers the statement. In development and demos nobody does, so
:func:`statement_for_day` plays the bank: it fetches each enabled gateway's bill for the day (the
simulators' bills, through the same adapters the nightly job uses), computes what that gateway
would settle (payments - refunds - fees, :func:`reconciliation.matching.summarize`) and books one
credit per gateway with the reference ``SETTLE <GW> <YYYYMMDD>``, as a real settlement would read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape

from clearing.money import format_fen
from gateways.protocol import PaymentGateway
from reconciliation import matching
from reconciliation.parsers import parse

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


@dataclass(frozen=True, slots=True)
class BankEntry:
    amount_fen: int
    """Signed fen: + credit, - debit."""
    reference: str
    ref_id: str


def _entry(e: BankEntry, day: date) -> str:
    direction = "CRDT" if e.amount_fen >= 0 else "DBIT"
    return (
        "      <Ntry>\n"
        f'        <Amt Ccy="CNY">{format_fen(abs(e.amount_fen))}</Amt>\n'
        f"        <CdtDbtInd>{direction}</CdtDbtInd>\n"
        "        <Sts><Cd>BOOK</Cd></Sts>\n"
        f"        <BookgDt><Dt>{day.isoformat()}</Dt></BookgDt>\n"
        f"        <ValDt><Dt>{day.isoformat()}</Dt></ValDt>\n"
        f"        <AcctSvcrRef>{escape(e.ref_id)}</AcctSvcrRef>\n"
        "        <NtryDtls><TxDtls>\n"
        f'          <Amt Ccy="CNY">{format_fen(abs(e.amount_fen))}</Amt>\n'
        f"          <RmtInf><Ustrd>{escape(e.reference)}</Ustrd></RmtInf>\n"
        "        </TxDtls></NtryDtls>\n"
        "      </Ntry>\n"
    )


def build_camt053(entries: Sequence[BankEntry], account: str, day: date) -> bytes:
    """A camt.053.001.08 statement of ``account`` for ``day`` with booked ``entries``."""
    stamp = f"{day:%Y%m%d}"
    body = "".join(_entry(e, day) for e in entries)
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{NS}">\n  <BkToCstmrStmt>\n'
        f"    <GrpHdr><MsgId>STMT{stamp}</MsgId>"
        f"<CreDtTm>{day.isoformat()}T23:59:59+08:00</CreDtTm></GrpHdr>\n"
        f"    <Stmt>\n      <Id>{escape(account)}-{stamp}</Id>\n"
        f"      <CreDtTm>{day.isoformat()}T23:59:59+08:00</CreDtTm>\n"
        f"      <Acct><Id><Othr><Id>{escape(account)}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>\n"
        f"{body}    </Stmt>\n  </BkToCstmrStmt>\n</Document>\n"
    )
    return doc.encode()


def settlement_entries(gateways: Mapping[str, PaymentGateway], day: date) -> list[BankEntry]:
    """One credit per gateway whose bill for ``day`` nets to a positive amount."""
    out = []
    for name in sorted(gateways):
        bill = gateways[name].fetch_bill(day)
        summary = matching.summarize(name, day, parse(bill.content, filename=bill.filename))
        if summary.net > 0:
            out.append(
                BankEntry(
                    summary.net,
                    f"SETTLE {name.upper()} {day:%Y%m%d}",
                    f"STL-{name.upper()}-{day:%Y%m%d}",
                )
            )
    return out


def statement_for_day(
    gateways: Mapping[str, PaymentGateway], day: date, account: str = "icbc-510100"
) -> tuple[str, bytes]:
    """(file name, camt.053 bytes) of the dev fiscal-account statement for ``day``."""
    data = build_camt053(settlement_entries(gateways, day), account, day)
    return f"camt053_{account}_{day:%Y%m%d}.xml", data
