"""``feishui ledger balances|trial-balance|verify|seal|export``.

Thin: each command opens one transaction, calls the ledger and prints. Amounts are printed in
yuan from integer fen. Exit codes: 0 ok, 1 the ledger is unbalanced or does not verify, 2 bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date

from api.runtime import get_runtime
from clearing.db import transaction
from clearing.errors import ValidationError
from clearing.ledger.export import export_beancount
from clearing.ledger.service import LedgerService
from clearing.money import format_fen

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SEAL_BATCH = 50_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ledger", help="read, seal, verify and export the ledger")
    lsub = p.add_subparsers(dest="ledger_command", required=True)
    bal = lsub.add_parser("balances", help="every account's debits, credits and balance")
    bal.add_argument("--as-of", metavar="YYYY-MM-DD", help="up to this business date")
    bal.set_defaults(func=_balances)
    tb = lsub.add_parser("trial-balance", help="debit and credit balances; exit 1 if unequal")
    tb.add_argument("--as-of", metavar="YYYY-MM-DD", help="up to this business date")
    tb.set_defaults(func=_trial_balance)
    vf = lsub.add_parser("verify", help="check the hash chain and the entries (read-only)")
    vf.set_defaults(func=_verify)
    sl = lsub.add_parser("seal", help="append unsealed entries to the hash chain")
    sl.set_defaults(func=_seal)
    ex = lsub.add_parser("export", help="write the ledger to stdout in another format")
    ex.add_argument("--format", choices=["beancount"], default="beancount")
    ex.set_defaults(func=_export)


def parse_date(text: str | None, field: str = "as_of") -> date | None:
    """A strict ``YYYY-MM-DD`` calendar date (``None`` passes through)."""
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"invalid date {text!r}: expected a real date as YYYY-MM-DD", field=field
        ) from None


def _table(header: list[str], rows: list[list[str]], right: int) -> None:
    """Print columns aligned; columns from index ``right`` on are right-aligned (amounts)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i >= right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _balances(args: argparse.Namespace) -> int:
    as_of = parse_date(args.as_of)
    with transaction(get_runtime().sessions) as session:
        rows = LedgerService(session).balances(as_of=as_of)
    _table(
        ["account", "type", "currency", "debits", "credits", "balance"],
        [
            [
                r.code,
                r.type.value,
                r.currency,
                format_fen(r.debits),
                format_fen(r.credits),
                format_fen(r.balance),
            ]
            for r in rows
        ],
        right=3,
    )
    return 0


def _trial_balance(args: argparse.Namespace) -> int:
    as_of = parse_date(args.as_of)
    with transaction(get_runtime().sessions) as session:
        tb = LedgerService(session).trial_balance(as_of=as_of)
    rows = []
    for r in tb.rows:
        net = r.debits - r.credits
        rows.append(
            [r.code, r.type.value, r.currency, format_fen(max(net, 0)), format_fen(max(-net, 0))]
        )
    for currency, (debit, credit) in tb.totals().items():
        rows.append([f"total {currency}", "", currency, format_fen(debit), format_fen(credit)])
    _table(["account", "type", "currency", "debit", "credit"], rows, right=3)
    print("balanced" if tb.balanced else "NOT BALANCED")
    return 0 if tb.balanced else 1


def _verify(_args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        report = LedgerService(session).verify()
    print(f"entries: {report.entries}  sealed: {report.sealed}  unsealed: {report.unsealed}")
    if report.ok:
        print("ok")
        return 0
    entry_id, reason = report.failures[0]
    where = f"entry {entry_id}" if entry_id else "ledger"
    print(f"FAILED ({len(report.failures)} problem(s)); first: {where}: {reason}")
    return 1


def _seal(_args: argparse.Namespace) -> int:
    total = 0
    while True:  # one transaction per batch, so a huge backlog does not hold one lock for long
        with transaction(get_runtime().sessions) as session:
            sealed = LedgerService(session).seal(limit=SEAL_BATCH)
        total += sealed
        if sealed < SEAL_BATCH:
            break
    print(f"sealed {total} entries")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = sys.stdout
    if (out.encoding or "").lower().replace("-", "") != "utf8" and hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")
    with transaction(get_runtime().sessions) as session:
        export_beancount(session, out)
    out.flush()
    return 0
