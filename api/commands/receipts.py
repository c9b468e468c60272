"""``feishui receipt verify FILE [--public-key PEM]`` and ``feishui receipt show NUMBER``.

``verify`` works offline: it needs only the receipt JSON (as served at
``/receipts/{number}.json``) and the published public key (``--public-key``, or the e-seal key
of the settings). Exit codes: 0 valid, 1 INVALID, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from api.runtime import get_runtime
from clearing.db import transaction
from clearing.money import format_fen
from notices.receipts import (
    find_receipt,
    receipt_json,
    render_receipt_pdf,
    verify_receipt_file,
    verify_url,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("receipt", help="show and verify electronic receipts")
    rsub = p.add_subparsers(dest="receipt_command", required=True)
    vf = rsub.add_parser("verify", help="verify a receipt JSON file's e-seal (offline)")
    vf.add_argument("file", type=Path, metavar="FILE")
    vf.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the published e-seal public key (default: the configured e-seal)",
    )
    vf.set_defaults(func=_verify)
    show = rsub.add_parser("show", help="print a receipt by number and check code")
    show.add_argument("number", metavar="NUMBER")
    show.add_argument("--check", required=True, metavar="CODE", help="the receipt's check code")
    out = show.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the signed JSON")
    out.add_argument("--pdf", type=Path, metavar="OUT", help="write the PDF to OUT")
    show.set_defaults(func=_show)


def _verify(args: argparse.Namespace) -> int:
    result = verify_receipt_file(args.file, args.public_key)
    if result.ok:
        print(
            f"valid: receipt {result.number} issued by {result.issuer} (e-seal key {result.key_id})"
        )
        return 0
    print(f"INVALID: {result.reason}")
    return 1


def _show(args: argparse.Namespace) -> int:
    runtime = get_runtime()
    with transaction(runtime.sessions) as session:
        receipt = find_receipt(session, args.number, args.check)
    if args.json:
        json.dump(receipt_json(receipt), sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    if args.pdf:
        url = verify_url(runtime.settings.public_base_url, receipt)
        args.pdf.write_bytes(render_receipt_pdf(receipt, url))
        print(f"wrote {args.pdf}")
        return 0
    doc = receipt.payload
    print(f"receipt     {doc['number']}  (check code {doc['check_code']})")
    print(f"issuer      {doc['issuer']['platform']} / {doc['issuer']['department']}")
    print(f"payer       {doc['payer']['name_masked']}")
    print(f"notice      {doc['payment_code']}")
    for item in doc["items"]:
        print(
            f"  {item['code']:<12} {item['name_zh']} x{item['quantity']}"
            f"  {format_fen(item['amount']['fen']):>12}"
        )
    print(f"principal   {format_fen(doc['principal']['fen']):>12} {doc['currency']}")
    print(f"late fee    {format_fen(doc['late_fee']['fen']):>12} {doc['currency']}")
    print(f"total       {format_fen(doc['total']['fen']):>12} {doc['currency']}")
    print(
        f"paid at     {doc['paid_at']} via {doc['payment']['gateway']} "
        f"({doc['payment']['channel']})"
    )
    print(f"verify at   {verify_url(runtime.settings.public_base_url, receipt)}")
    return 0
