"""``feishui``: the command line. Each feature's commands live in ``api/commands/<name>.py``
and add themselves to the parser with a ``register`` function.

Errors are one line on stderr and a non-zero exit (2 for bad input, 1 otherwise), never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api.commands import (
    db,
    demo,
    finance,
    ledger,
    notices,
    receipts,
    reconcile,
    serve,
    statements,
    webhooks,
    workers,
)
from clearing.errors import FeishuiError

#: Order matters where one module extends another's command (webhooks adds `department webhook`).
COMMANDS = (
    db,
    ledger,
    notices,
    receipts,
    statements,
    reconcile,
    finance,
    webhooks,
    serve,
    workers,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feishui", description="Payment clearing for government non-tax revenue (非税)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FeishuiError as exc:
        print(f"feishui: {exc.detail}", file=sys.stderr)
        return 2 if exc.status < 500 else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI promises one line, never a traceback
        print(f"feishui: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
