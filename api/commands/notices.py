"""``feishui catalogue …``, ``feishui department …`` and ``feishui code check CODE``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from api.runtime import get_runtime
from clearing.db import transaction
from clearing.errors import ValidationError
from clearing.money import format_fen
from notices import catalogue, departments
from notices.codes import PaymentCodeError, format_code, validate_code
from notices.models import BUDGET_LEVELS, DEPARTMENT_KINDS, NOTICE_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    _register_catalogue(sub)
    _register_department(sub)
    _register_code(sub)


# ------------------------------------------------------------------------------ catalogue


def _register_catalogue(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalogue", help="the catalogue of billable items")
    cat = p.add_subparsers(dest="catalogue_command", required=True)
    seed = cat.add_parser("seed", help="add the items of a catalogue file that are missing")
    seed.add_argument("--file", type=Path, default=catalogue.SEED_PATH)
    seed.set_defaults(func=_seed)
    ls = cat.add_parser("list", help="list the items")
    ls.add_argument("--all", action="store_true", help="include disabled items")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)
    add = cat.add_parser("add", help="add one item")
    add.add_argument("code")
    add.add_argument("--name-zh", required=True)
    add.add_argument("--name-en", required=True)
    add.add_argument("--kind", required=True, choices=NOTICE_KINDS)
    add.add_argument("--amount", required=True, help='unit price in yuan ("200.00") or "variable"')
    add.add_argument("--max-amount", help="ceiling of a variable amount, in yuan")
    add.add_argument(
        "--shares", required=True, help="treasury=basis points, comma separated: 510100-city=10000"
    )
    add.add_argument("--revenue-code", required=True, help="政府收支分类科目, e.g. 103050101")
    add.add_argument("--budget-level", required=True, choices=BUDGET_LEVELS)
    add.add_argument("--for-kinds", default="", help=f"comma separated: {DEPARTMENT_KINDS}")
    add.add_argument("--for-departments", default="", help="department names, comma separated")
    add.add_argument(
        "--late-fee",
        default="none",
        help='"none" or "daily:<bp per day>:<cap bp>", e.g. daily:300:10000',
    )
    add.set_defaults(func=_add)
    disable = cat.add_parser("disable", help="stop an item being used on new notices")
    disable.add_argument("code")
    disable.set_defaults(func=_disable)


def _seed(args: argparse.Namespace) -> int:
    specs = catalogue.load_seed(args.file)
    with transaction(get_runtime().sessions) as session:
        added, skipped = catalogue.seed(session, specs)
    print(f"catalogue: {added} added, {skipped} already present")
    return 0


def _list(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        items = catalogue.list_items(session, include_disabled=args.all)
        rows = [_describe(item) for item in items]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        state = "" if row["active"] else "  [disabled]"
        print(f"{row['code']:<20} {row['kind']:<13} {row['amount']:>12}  {row['name_zh']}{state}")
    return 0


def _describe(item: catalogue.CatalogueItem) -> dict[str, object]:
    return {
        "code": item.code,
        "kind": item.kind,
        "name_zh": item.name_zh,
        "name_en": item.name_en,
        "active": item.active,
        "amount": catalogue.VARIABLE if item.amount is None else format_fen(item.amount),
        "shares": item.shares,
        "revenue_code": item.revenue_code,
        "budget_level": item.budget_level,
        "department_kinds": item.department_kinds,
        "department_names": item.department_names,
        "late_fee_rule": item.late_fee_rule,
    }


def _add(args: argparse.Namespace) -> int:
    data = {
        "code": args.code,
        "name_zh": args.name_zh,
        "name_en": args.name_en,
        "kind": args.kind,
        "amount": args.amount,
        "shares": _shares(args.shares),
        "revenue_code": args.revenue_code,
        "budget_level": args.budget_level,
        "department_kinds": _names(args.for_kinds),
        "department_names": _names(args.for_departments),
        "late_fee_rule": _late_fee(args.late_fee),
    }
    if args.max_amount:
        data["max_amount"] = args.max_amount
    spec = catalogue.spec_from_dict(data)
    with transaction(get_runtime().sessions) as session:
        catalogue.add_item(session, spec)
    print(f"catalogue item {spec.code} added")
    return 0


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _shares(text: str) -> dict[str, int]:
    shares = {}
    for part in _names(text):
        treasury, _, bp = part.partition("=")
        if not bp.isdigit():
            raise ValidationError(f"share {part!r} must look like treasury=10000", field="shares")
        shares[treasury.strip()] = int(bp)
    return shares


def _late_fee(text: str) -> dict[str, object]:
    if text == "none":
        return {"kind": "none"}
    kind, _, rest = text.partition(":")
    per_day, _, cap = rest.partition(":")
    if kind != "daily" or not per_day.isdigit() or not cap.isdigit():
        raise ValidationError('late fee must be "none" or "daily:<bp>:<cap bp>"', field="late_fee")
    return {
        "kind": "daily_percent",
        "basis_points_per_day": int(per_day),
        "cap_bp_of_principal": int(cap),
    }


def _disable(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        catalogue.disable_item(session, args.code)
    print(f"catalogue item {args.code} disabled")
    return 0


# ------------------------------------------------------------------------------ departments


def _register_department(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("department", help="departments and their API keys")
    dep = p.add_subparsers(dest="department_command", required=True)
    create = dep.add_parser("create", help="create a department; prints its first API key once")
    create.add_argument("name")
    create.add_argument("--region", required=True, help="6-digit region code, e.g. 510100")
    create.add_argument("--kind", default="agency", choices=DEPARTMENT_KINDS)
    _scopes_option(create)
    create.set_defaults(func=_create)
    add_key = dep.add_parser("add-key", help="issue another API key; prints it once")
    add_key.add_argument("name")
    _scopes_option(add_key)
    add_key.set_defaults(func=_add_key)
    revoke = dep.add_parser("revoke-key", help="revoke an API key by its prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=_revoke)
    ls = dep.add_parser("list", help="list departments")
    ls.set_defaults(func=_list_departments)


def _scopes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scopes",
        default=",".join(departments.DEFAULT_SCOPES),
        help=f"comma separated, from {', '.join(departments.SCOPES)}",
    )


def _print_key(key: departments.NewKey) -> None:
    print(f"department: {key.department}")
    print(f"key prefix: {key.prefix}")
    print(f"scopes:     {' '.join(key.scopes)}")
    print(f"API key:    {key.full}")
    print("Store the key now: it is not shown again and cannot be recovered.")


def _create(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        key = departments.create_department(
            session, args.name, args.region, args.kind, _names(args.scopes)
        )
    _print_key(key)
    return 0


def _add_key(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        key = departments.add_key(session, args.name, _names(args.scopes))
    _print_key(key)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        departments.revoke_key(session, args.prefix)
    print(f"API key {args.prefix} revoked")
    return 0


def _list_departments(_args: argparse.Namespace) -> int:
    with transaction(get_runtime().sessions) as session:
        for d in departments.list_departments(session):
            print(f"{d.id:>6}  {d.kind:<7} {d.region_code}  {d.name}")
    return 0


# ------------------------------------------------------------------------------ codes


def _register_code(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("code", help="payment codes")
    code = p.add_subparsers(dest="code_command", required=True)
    check = code.add_parser("check", help="say whether a payment code is valid, and why not")
    check.add_argument("code")
    check.set_defaults(func=_check_code)


def _check_code(args: argparse.Namespace) -> int:
    try:
        compact = validate_code(args.code)
    except PaymentCodeError as exc:
        print(f"invalid: {exc.detail}")
        return 1
    print(f"valid: {format_code(compact)}")
    return 0
