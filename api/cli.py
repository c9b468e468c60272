"""``feishui``: the command line. Each feature adds its commands with a ``register`` function.

Errors are one line on stderr and a non-zero exit (2 for bad input, 1 otherwise), never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from clearing.errors import FeishuiError

Register = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Register]:
    from api.commands import db as db_cmd
    from api.commands import workers

    registrars: list[Register] = [db_cmd.register, workers.register]
    for module in _optional_modules():
        registrars.append(module.register)
    return registrars


def _optional_modules() -> list:  # type: ignore[type-arg]
    """Command modules of features that have landed (each defines ``register``)."""
    import importlib

    names = ["api.commands.ledger", "api.commands.notices", "api.commands.demo",
             "api.commands.serve"]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feishui", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
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
    except Exception as exc:
        print(f"feishui: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
