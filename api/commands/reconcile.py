"""``feishui reconcile``: reconcile bills and bank statements, list runs, show one run.

- ``feishui reconcile bill FILE [--gateway G] [--date D]``
- ``feishui reconcile statement FILE [--account fiscal_bank:NAME]``
- ``feishui reconcile night [--date D]`` (every enabled gateway, then the dev statement)
- ``feishui reconcile runs [--limit N]``
- ``feishui reconcile show RUN_ID`` (summary and exceptions)

Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from api.commands.ledger import parse_date
from api.runtime import get_runtime
from clearing.db import transaction
from clearing.money import format_fen
from gateways.options import GATEWAY_NAMES
from reconciliation import filestore, service
from reconciliation.parsers import StatementError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="reconcile gateway bills and bank statements")
    rsub = p.add_subparsers(dest="reconcile_command", required=True)
    b = rsub.add_parser("bill", help="reconcile one gateway bill")
    b.add_argument("file", metavar="FILE")
    b.add_argument("--gateway", choices=GATEWAY_NAMES, default=None)
    b.add_argument("--date", default=None, help="business date YYYY-MM-DD (default: file name)")
    b.set_defaults(func=_bill)
    s = rsub.add_parser("statement", help="reconcile a fiscal account statement (OFX, camt.053)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--account", default=service.DEFAULT_ACCOUNT)
    s.set_defaults(func=_statement)
    n = rsub.add_parser("night", help="the nightly run: every gateway's bill, then the statement")
    n.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday, Shanghai)")
    n.set_defaults(func=_night)
    r = rsub.add_parser("runs", help="list runs, newest first")
    r.add_argument("--limit", type=int, default=50)
    r.set_defaults(func=_runs)
    sh = rsub.add_parser("show", help="a run's summary and its exceptions")
    sh.add_argument("run_id", type=int, metavar="RUN_ID")
    sh.set_defaults(func=_show)


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StatementError(
            f"cannot read the file: {exc.strerror or exc}", filename=Path(path).name
        ) from None


def _bill(args: argparse.Namespace) -> int:
    rt = get_runtime()
    from clearing.payments.wiring import get_payment_context

    data = _read(args.file)
    filestore.store(rt.settings, data)
    run_id = service.reconcile_bill(
        rt.sessions,
        get_payment_context(),
        data=data,
        filename=Path(args.file).name,
        started_by=_who(),
        source=args.gateway,
        business_date=parse_date(args.date, "date"),
    )
    return _print_run(run_id, exceptions=False)


def _statement(args: argparse.Namespace) -> int:
    rt = get_runtime()
    data = _read(args.file)
    filestore.store(rt.settings, data)
    run_id = service.reconcile_statement(
        rt.sessions,
        data=data,
        filename=Path(args.file).name,
        started_by=_who(),
        account=args.account,
    )
    return _print_run(run_id, exceptions=False)


def _night(args: argparse.Namespace) -> int:
    from clearing.payments.wiring import get_payment_context
    from reconciliation import tasks

    day = parse_date(args.date, "date") or tasks.yesterday()
    out = tasks.run_night(get_runtime(), get_payment_context(), day, _who())
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _runs(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as s:
        runs = service.list_runs(s, args.limit)
        print("id\tkind\tsource\tdate\tstate\tlines\tstarted_by\tfile")
        for r in runs:
            print(
                f"{r.id}\t{r.kind}\t{r.source}\t{r.business_date}\t{r.state}\t{r.line_count}"
                f"\t{r.started_by}\t{r.file_name}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    return _print_run(args.run_id, exceptions=True)


def _print_run(run_id: int, *, exceptions: bool) -> int:
    with transaction(get_runtime().sessions) as s:
        r = service.get_run(s, run_id)
        print(f"run {r.id}: {r.kind} {r.source} {r.business_date} {r.state}")
        print(f"file {r.file_name} sha256 {r.file_sha256} ({r.file_format})")
        print(f"started by {r.started_by} at {r.started_at}; finished {r.finished_at}")
        if r.error:
            print(f"error: {r.error}")
        superseded = f"; superseded by run {r.superseded_by_id}" if r.superseded_by_id else ""
        print(f"lines {r.line_count}{superseded}")
        for outcome, n in sorted((r.counts or {}).items()):
            print(f"  {outcome:<20} {n:>9}  {format_fen(int(r.totals.get(outcome, 0))):>16}")
        if not exceptions:
            return 0
        print("exceptions:")
        print(
            "line\toutcome\tkind\torder_id\texternal_id\tamount\texpected\tfee\texpected_fee"
            "\tdetail"
        )
        for i in service.exceptions(s, run_id, limit=1000):
            exp = "" if i.expected_amount is None else format_fen(i.expected_amount)
            efee = "" if i.expected_fee is None else format_fen(i.expected_fee)
            print(
                f"{i.line_no or ''}\t{i.outcome}\t{i.kind}\t{i.order_id or ''}\t"
                f"{i.external_id or ''}\t{format_fen(i.amount)}\t{exp}\t{format_fen(i.fee)}"
                f"\t{efee}\t{i.detail}"
            )
    return 0
