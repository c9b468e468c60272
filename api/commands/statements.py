"""``feishui statement show FILE [--format NAME]``: a settlement file or bank statement as CSV.

Prints the normalised :class:`~reconciliation.lines.StatementLine` rows (amounts in yuan) to
stdout. A broken, truncated, mis-encoded or unknown file is one line on stderr and exit 2; the
whole file is parsed (footers and trailers checked) before anything is printed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from clearing.money import format_fen
from reconciliation.lines import StatementLine
from reconciliation.parsers import FORMATS, StatementError, parse

COLUMNS = [
    "source",
    "line_no",
    "external_id",
    "order_id",
    "amount",
    "fee",
    "fee_exact",
    "currency",
    "booked_on",
    "value_on",
    "kind",
    "refund_id",
    "reversal",
    "reference",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("statement", help="read gateway bills and bank statements")
    ssub = p.add_subparsers(dest="statement_command", required=True)
    show = ssub.add_parser("show", help="print a statement's normalised lines as CSV")
    show.add_argument("file", metavar="FILE")
    show.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default=None,
        help="skip detection and read FILE as this format",
    )
    show.set_defaults(func=_show)


def row(line: StatementLine) -> list[str]:
    """One CSV row; amounts as yuan strings from integer fen."""
    return [
        line.source,
        str(line.line_no),
        line.external_id,
        line.order_id or "",
        format_fen(line.amount_fen),
        format_fen(line.fee_fen),
        "" if line.fee_exact is None else str(line.fee_exact),
        line.currency,
        line.booked_on.isoformat(),
        "" if line.value_on is None else line.value_on.isoformat(),
        str(line.kind),
        line.refund_id or "",
        "true" if line.reversal else "false",
        line.reference,
    ]


def _show(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StatementError(
            f"cannot read the file: {exc.strerror or exc}", filename=path.name
        ) from None
    rows = [row(line) for line in parse(data, format=args.format, filename=path.name)]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return 0
