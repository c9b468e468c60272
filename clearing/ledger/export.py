"""Export the ledger as a beancount v3 file, so that ``bean-check`` can verify it independently.

The file has, in this order:

- ``option "operating_currency" "CNY"`` (and a title);
- one ``open`` directive per account, dated on the business date of the account's first posting
  (an account without postings: the ledger's earliest business date, or 1970-01-01 for an empty
  ledger) and restricted to the account's currency;
- one transaction per journal entry, ordered by business date then entry id:
  ``YYYY-MM-DD * "description"`` with the entry's id, idempotency key, creation time, content hash,
  reference, reversed entry and JSON metadata as string metadata, and one posting per leg with the
  amount in yuan printed exactly from integer fen (:func:`clearing.money.format_fen`; debits
  positive, credits negative);
- a ``balance`` assertion for every account, with zero tolerance, dated the day after the last
  business date, holding the totals the database computes (``SUM`` over postings). beancount sums
  the exported postings itself, so ``bean-check`` compares its arithmetic against ours to the fen.

Account names (:func:`account_name`). A code ``kind[:qualifier...]`` becomes
``<Root>:<component>:<component>...``: the root comes from the account type (asset ``Assets``,
liability ``Liabilities``, equity ``Equity``, revenue ``Income``, expense ``Expenses``) and each
``:``-separated part of the code becomes one component. beancount components must match
``[A-Z0-9][A-Za-z0-9-]*`` (``ACCOUNTNAME`` in ``beancount/parser/lexer.l``; we stay in ASCII
although the lexer also accepts non-ASCII UTF-8). A part is written in one of two forms:

- *plain*, for parts made of lower-case ASCII letters, digits, ``-`` and ``_`` whose plain form
  reads back unchanged: every word is capitalised, ``_`` is dropped and marks the next word,
  ``-`` is kept (``gateway_clearing`` -> ``GatewayClearing``, ``510100-city`` -> ``510100-City``,
  ``icbc-5101`` -> ``Icbc-5101``); digits may start a component, so no prefix is needed;
- *escaped*, for every other part (upper case, other characters, an empty part, ``a_1``...):
  ``X-x`` followed by the part with ASCII letters and digits kept and any other character written
  as ``-<upper-case hex of its code point>-`` (``ICBC 5101`` -> ``X-xICBC-20-5101``,
  ``财政`` -> ``X-x-8D22--653F-``). A plain form never has a lower-case letter right after a
  ``-``, so the two forms cannot collide.

:func:`account_code` is the exact inverse (``account_code(account_name(code, t)) == code``), which
is what makes the mapping injective; it is deterministic (a function of the code and type only).

Strings are double-quoted with ``\\`` and ``"`` escaped and newline, carriage return and tab
written as ``\\n``, ``\\r``, ``\\t`` (beancount's lexer unescapes them); other text, Chinese
included, is written as UTF-8. A NUL character (which beancount cannot read) becomes U+FFFD.

Consistency: the accounts, the entries and the balance totals are three queries. On PostgreSQL the
export switches a fresh session to REPEATABLE READ so that all three see one snapshot; a session
that is already in a READ COMMITTED transaction may see entries committed between the queries, in
which case the balance assertions (not the transactions) can disagree with the exported postings.
SQLite transactions are snapshots already.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import groupby
from typing import TextIO

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from clearing.ledger.core import AccountType, utc_iso
from clearing.ledger.models import Account, JournalEntry
from clearing.ledger.models import Posting as PostingRow
from clearing.ledger.repository import LedgerRepository
from clearing.money import format_fen

ROOTS: dict[AccountType, str] = {
    AccountType.ASSET: "Assets",
    AccountType.LIABILITY: "Liabilities",
    AccountType.EQUITY: "Equity",
    AccountType.REVENUE: "Income",
    AccountType.EXPENSE: "Expenses",
}
_ROOT_TYPES = {root: t for t, root in ROOTS.items()}

EPOCH = date(1970, 1, 1)
ESCAPED = "X-x"
_COMPONENT = re.compile(r"[A-Z0-9][A-Za-z0-9-]*")
_PLAIN_SOURCE = re.compile(r"[a-z0-9_-]+")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_HEX = re.compile(r"[0-9A-F]{1,6}")
_STRING_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\x00": "\ufffd",
}


# account names ------------------------------------------------------------------------------


def account_name(code: str, account_type: AccountType | str) -> str:
    """The beancount account name of a ledger account code (see the module docstring)."""
    return ":".join(
        [ROOTS[AccountType(account_type)], *(_component(part) for part in code.split(":"))]
    )


def account_code(name: str) -> str:
    """The ledger code of a name made by :func:`account_name` (ValueError for any other)."""
    root, _, rest = name.partition(":")
    if root not in _ROOT_TYPES or not rest:
        raise ValueError(f"not an exported account name: {name!r}")
    parts = [_decode(component) for component in rest.split(":")]
    if any(part is None for part in parts):
        raise ValueError(f"not an exported account name: {name!r}")
    return ":".join(parts)  # type: ignore[arg-type]


def _component(part: str) -> str:
    if _PLAIN_SOURCE.fullmatch(part):
        plain = _plain(part)
        if _COMPONENT.fullmatch(plain) and not plain.startswith(ESCAPED) and _decode(plain) == part:
            return plain
    return ESCAPED + "".join(ch if _ALNUM.fullmatch(ch) else f"-{ord(ch):X}-" for ch in part)


def _plain(part: str) -> str:
    out: list[str] = []
    upper = True
    for ch in part:
        if ch == "_":
            upper = True
            continue
        out.append(ch.upper() if upper else ch)
        upper = ch == "-"
    return "".join(out)


def _decode(component: str) -> str | None:
    if not _COMPONENT.fullmatch(component):
        return None
    if component.startswith(ESCAPED):
        return _unescape(component[len(ESCAPED) :])
    out: list[str] = []
    word_start = True
    for ch in component:
        if ch.isupper():
            out.append(ch.lower() if word_start else "_" + ch.lower())
        elif ch.islower() and word_start:
            return None  # a plain form capitalises every word
        else:
            out.append(ch)
        word_start = ch == "-"
    return "".join(out)


def _unescape(body: str) -> str | None:
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] != "-":
            out.append(body[i])
            i += 1
            continue
        end = body.find("-", i + 1)
        if end < 0 or not _HEX.fullmatch(body[i + 1 : end]):
            return None
        code_point = int(body[i + 1 : end], 16)
        if code_point > 0x10FFFF or _ALNUM.fullmatch(chr(code_point)):
            return None  # never produced: letters and digits are written as themselves
        out.append(chr(code_point))
        i = end + 1
    return "".join(out)


def quote(text: str) -> str:
    """A beancount string literal for ``text``."""
    return '"' + "".join(_STRING_ESCAPES.get(ch, ch) for ch in text) + '"'


# the export ---------------------------------------------------------------------------------


def export_beancount(session: Session, out: TextIO, *, balance_assertions: bool = True) -> None:
    """Write the whole ledger to ``out`` as a beancount v3 file, streaming the journal."""
    _snapshot(session)
    accounts = _accounts(session)
    names = {
        account_id: account_name(code, t)
        for account_id, (code, t, _cur, _first) in accounts.items()
    }
    last = session.scalar(select(func.max(JournalEntry.business_date)))
    earliest = session.scalar(select(func.min(JournalEntry.business_date))) or EPOCH

    out.write(
        ";; feishui ledger, exported for beancount v3. Amounts are exact: integer fen "
        "printed as yuan.\n"
    )
    out.write('option "title" "feishui ledger"\n')
    out.write('option "operating_currency" "CNY"\n\n')
    for account_id, (_code, _t, currency, first_used) in sorted(
        accounts.items(), key=lambda item: (item[1][3] or earliest, names[item[0]])
    ):
        out.write(f"{(first_used or earliest).isoformat()} open {names[account_id]} {currency}\n")
    for entry, legs in _journal(session):
        out.write("\n")
        out.write(_transaction(entry, legs, names))
    if balance_assertions and last is not None:
        out.write("\n")
        out.write(_assertions(session, last + timedelta(days=1)))


def _snapshot(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _accounts(session: Session) -> dict[int, tuple[str, str, str, date | None]]:
    """id -> (code, type, currency, business date of the first posting or None)."""
    first = (
        select(PostingRow.account_id, func.min(JournalEntry.business_date).label("first"))
        .join(JournalEntry, JournalEntry.id == PostingRow.entry_id)
        .group_by(PostingRow.account_id)
        .subquery()
    )
    rows = session.execute(
        select(Account.id, Account.code, Account.type, Account.currency, first.c.first)
        .outerjoin(first, first.c.account_id == Account.id)
        .order_by(Account.id)
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _journal(session: Session) -> Iterator[tuple[Row, list[Row]]]:
    """(entry, legs) in business date then id order, streamed in batches."""
    stmt = (
        select(
            JournalEntry.id,
            JournalEntry.business_date,
            JournalEntry.description,
            JournalEntry.idempotency_key,
            JournalEntry.created_at,
            JournalEntry.content_hash,
            JournalEntry.ref_type,
            JournalEntry.ref_id,
            JournalEntry.reverses_id,
            JournalEntry.metadata_.label("meta"),
            PostingRow.account_id,
            PostingRow.direction,
            PostingRow.amount,
            PostingRow.currency,
        )
        .join(PostingRow, PostingRow.entry_id == JournalEntry.id)
        .order_by(JournalEntry.business_date, JournalEntry.id, PostingRow.id)
        .execution_options(yield_per=1_000)
    )
    rows = session.execute(stmt)
    for _entry_id, group in groupby(rows, key=lambda r: r.id):
        legs = list(group)
        yield legs[0], legs


def _transaction(entry: Row, legs: list[Row], names: dict[int, str]) -> str:
    lines = [f"{entry.business_date.isoformat()} * {quote(entry.description)}"]
    meta = [
        ("entry_id", str(entry.id)),
        ("idempotency_key", entry.idempotency_key),
        ("created_at", utc_iso(entry.created_at)),
        ("content_hash", entry.content_hash),
    ]
    if entry.ref_type is not None:
        meta.append(("ref_type", entry.ref_type))
    if entry.ref_id is not None:
        meta.append(("ref_id", entry.ref_id))
    if entry.reverses_id is not None:
        meta.append(("reverses_id", str(entry.reverses_id)))
    if entry.meta:
        meta.append(("metadata", json.dumps(entry.meta, sort_keys=True, ensure_ascii=False)))
    lines += [f"  {key}: {quote(value)}" for key, value in meta]
    for leg in legs:
        signed = leg.amount if leg.direction == "D" else -leg.amount
        lines.append(f"  {names[leg.account_id]}  {format_fen(signed)} {leg.currency}")
    return "\n".join(lines) + "\n"


def _assertions(session: Session, on: date) -> str:
    """Zero-tolerance ``balance`` directives holding the database's totals.

    beancount checks an account's balance together with its sub-accounts', so each assertion
    is the sum over the account and every account whose name extends it, in its currency.
    """
    totals = [
        (account_name(code, t), cur, debits - credits)
        for code, t, cur, debits, credits in LedgerRepository(session).totals()
    ]
    subtree: dict[tuple[str, str], int] = defaultdict(int)
    for name, currency, net in totals:
        parts = name.split(":")
        for depth in range(2, len(parts) + 1):
            subtree[(":".join(parts[:depth]), currency)] += net
    lines = [
        f"{on.isoformat()} balance {name}  {format_fen(subtree[(name, cur)])} ~ 0 {cur}"
        for name, cur, _net in sorted(totals)
    ]
    return "\n".join(lines) + "\n"
