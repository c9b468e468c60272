"""``feishui db upgrade|check``."""

from __future__ import annotations

import argparse

from clearing import migrate
from clearing.config import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database migrations")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="migrate the database to the newest revision")
    up.add_argument(
        "--to",
        default="head",
        metavar="REVISION",
        help="migrate to this revision instead (default: head). A deploy whose head is newer "
        f"than the oldest schema its code runs on ({migrate.OLDEST_SCHEMA}) runs --to "
        f"{migrate.OLDEST_SCHEMA} first, rolls every process, then the upgrade to head",
    )
    up.set_defaults(func=_upgrade)
    ck = dbsub.add_parser("check", help="fail if the models and the migrations disagree")
    ck.set_defaults(func=_check)
    rk = dbsub.add_parser(
        "reencrypt-pii",
        help="re-encrypt payers' personal data under the "
        "first key of FEISHUI_PII_KEYS (after a rotation; idempotent)",
    )
    rk.add_argument("--batch", type=int, default=500, help="notices per transaction")
    rk.set_defaults(func=_reencrypt_pii)


def _upgrade(args: argparse.Namespace) -> int:
    url = get_settings().effective_database_url()
    migrate.upgrade(url, args.to)
    print(f"database at {args.to}: {_safe(url)}")
    return 0


def _check(_args: argparse.Namespace) -> int:
    migrate.check(get_settings().effective_database_url())
    print("models and migrations agree")
    return 0


def _safe(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _reencrypt_pii(args: argparse.Namespace) -> int:
    from clearing.pii_rotation import reencrypt_notices

    print(f"re-encrypted {reencrypt_notices(args.batch)} notice(s) under the primary PII key")
    return 0
