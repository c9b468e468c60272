"""``feishui user create|token|disable`` (finance users) and ``feishui report ...`` (reports).

``user create`` asks for the password twice on the terminal, or reads one line from stdin with
``--password-stdin`` (for scripts). ``user token`` prints a new API token once; only its hash is
kept. Reports are written to ``--out`` (or stdout for CSV).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from api.commands.ledger import parse_date
from api.runtime import get_runtime
from clearing.db import transaction
from clearing.errors import ValidationError
from reconciliation import users
from reconciliation.models import ROLES
from reconciliation.reports import builders, render

FORMATS = ("csv", "xlsx", "pdf")


def register(sub: argparse._SubParsersAction) -> None:
    _register_user(sub)
    _register_report(sub)


def _register_user(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="finance users: officers, auditors, admins")
    usub = p.add_subparsers(dest="user_command", required=True)
    create = usub.add_parser("create", help="create a user (asks for the password)")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", help="display name (default: the user name)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    create.set_defaults(func=_create)
    token = usub.add_parser("token", help="issue an API token (printed once)")
    token.add_argument("username")
    token.set_defaults(func=_token)
    disable = usub.add_parser("disable", help="disable a user and revoke their tokens")
    disable.add_argument("username")
    disable.set_defaults(func=_disable)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationError("the passwords differ", field="password")
    return first


def _create(args: argparse.Namespace) -> int:
    password = _password(args.password_stdin)
    with transaction(get_runtime().sessions) as session:
        user = users.create_user(session, args.username, args.role, password, args.name)
        print(f"user {user.username} ({user.role}) created")
    return 0


def _token(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        issued = users.issue_api_token(session, args.username)
    print(issued.full)
    print("Shown once: store it now. Use it as 'Authorization: Bearer <token>'.", file=sys.stderr)
    return 0


def _disable(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        users.disable_user(session, args.username)
    print(f"user {args.username} disabled; its tokens and sessions are revoked")
    return 0


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="finance reports as CSV, XLSX or PDF")
    rsub = p.add_subparsers(dest="report_command", required=True)
    col = rsub.add_parser("collections", help="a business day's collections")
    col.add_argument("--date", required=True, metavar="YYYY-MM-DD")
    tb = rsub.add_parser("trial-balance", help="the trial balance")
    tb.add_argument("--as-of", metavar="YYYY-MM-DD")
    run = rsub.add_parser("run", help="a reconciliation run's report")
    run.add_argument("run_id", type=int, metavar="RUN_ID")
    for parser, func in ((col, _collections), (tb, _trial_balance), (run, _run)):
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument(
            "--out", type=Path, metavar="FILE", help="where to write (default: stdout, CSV only)"
        )
        parser.set_defaults(func=func)


def _write(data: bytes, args: argparse.Namespace) -> int:
    if args.out is None:
        if args.format != "csv":
            raise ValidationError(f"--out FILE is needed for {args.format}", field="out")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


def _collections(args: argparse.Namespace) -> int:
    day = parse_date(args.date, "date")
    assert day is not None
    with transaction(get_runtime().sessions) as session:
        report = builders.collections_report(session, day)
    return _write(render(report, args.format), args)


def _trial_balance(args: argparse.Namespace) -> int:
    as_of = parse_date(args.as_of)
    with transaction(get_runtime().sessions) as session:
        report = builders.trial_balance_report(session, as_of)
    return _write(render(report, args.format), args)


def _run(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        report = builders.run_report(session, args.run_id)
    return _write(render(report, args.format), args)
