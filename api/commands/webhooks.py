"""Department webhooks from the command line.

- ``feishui department webhook NAME --url URL``: set (or rotate) the endpoint; prints the signing
  secret once. ``--disable`` stops deliveries.
- ``feishui webhooks deliver``: run one delivery pass now (what the every-minute job does).
- ``feishui webhooks log [--department NAME] [--limit N]``: the latest delivery attempts.
"""

from __future__ import annotations

import argparse

from api.runtime import get_runtime
from clearing.db import transaction
from notices import events


def register(sub: argparse._SubParsersAction) -> None:
    hook = _department_commands(sub).add_parser(
        "webhook", help="set a department's webhook URL; prints its signing secret once"
    )
    hook.add_argument("name")
    target = hook.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="https:// endpoint (http://127.0.0.1 outside production)")
    target.add_argument("--disable", action="store_true", help="stop delivering events")
    hook.set_defaults(func=_set)
    p = sub.add_parser("webhooks", help="deliver department events and read the delivery log")
    wsub = p.add_subparsers(dest="webhooks_command", required=True)
    wsub.add_parser("deliver", help="run one delivery pass now").set_defaults(func=_deliver)
    log = wsub.add_parser("log", help="the latest delivery attempts, newest first")
    log.add_argument("--department", metavar="NAME")
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(func=_log)


def _department_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``feishui department`` (registered by api.commands.notices)."""
    parser = sub.choices.get("department") or sub.add_parser("department", help="departments")
    # argparse has no public way to reach an existing parser's sub-commands.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="department_command", required=True)


def _set(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    with transaction(runtime.sessions) as session:
        if args.disable:
            events.disable_webhook(session, args.name)
        else:
            secret = events.set_webhook(session, args.name, args.url, settings=runtime.settings)
    if args.disable:
        print(f"webhook of {args.name} disabled")
        return 0
    print(f"department:     {args.name}")
    print(f"webhook URL:    {args.url.strip()}")
    print(f"signing secret: {secret}")
    print("Store the secret now: it is not shown again. Setting the URL again rotates it.")
    return 0


def _deliver(_args: argparse.Namespace) -> int:
    runtime = get_runtime()
    made = events.deliver_due_events(runtime.sessions, settings=runtime.settings)
    print(f"{made} delivery attempt(s) made")
    return 0


def _log(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        lines = events.delivery_log(session, args.department, args.limit)
    for line in lines:
        outcome = str(line.status_code) if line.status_code is not None else "-"
        print(
            f"{line.started_at.isoformat(timespec='seconds')}  event {line.event_id:<6} "
            f"{line.type:<15} #{line.attempt_no}  {outcome:>3}  {line.duration_ms:>5} ms  "
            f"{line.event_state:<10} {line.department}  {line.url}"
            + (f"  ({line.error})" if line.error else "")
        )
    if not lines:
        print("no deliveries yet")
    return 0
