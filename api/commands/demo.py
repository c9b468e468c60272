"""``feishui demo``: the day of a provincial non-tax platform, on the embedded default.

Runs on whatever database is configured (by default a SQLite file under ./var), with jobs
in-process. Every step is idempotent: running the demo twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from clearing import migrate
from clearing.db import transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.runtime import get_runtime
from clearing.split import split_amount

DAY = date(2026, 11, 27)
SHARES = {"treasury_payable:100000-central": 2000, "treasury_payable:510000-province": 3000,
          "treasury_payable:510100-city": 5000}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the configured database")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    runtime = get_runtime()
    migrate.upgrade(runtime.settings.effective_database_url())
    print(f"database: {runtime.engine.url.render_as_string(hide_password=True)}\n")
    with transaction(runtime.sessions) as session:
        _ledger_story(LedgerService(session))
    with transaction(runtime.sessions) as session:
        ledger = LedgerService(session)
        ledger.seal()
        _print_trial_balance(ledger)
        _print_verify(ledger)
    _write_export(runtime)
    return 0


def _payment(key: str, gateway: str, fen: int, what: str) -> Entry:
    legs = [Posting.credit(acct, part) for acct, part in split_amount(fen, SHARES).items()
            if part]
    return Entry(key, DAY, what, (Posting.debit(f"gateway_clearing:{gateway}", fen), *legs),
                 ref_type="demo", ref_id=key)


def _ledger_story(ledger: LedgerService) -> None:
    print("== ledger: one day of collections")
    steps = [
        _payment("demo-pay-1", "alipay", 26_000, "交通罚款 闯红灯 200.00 + 滞纳金 60.00"),
        _payment("demo-pay-2", "wechatpay", 12_000, "护照签发 120.00"),
        _payment("demo-pay-3", "unionpay", 460_000, "学费 2026 秋季学期 4600.00"),
        Entry("demo-settle-alipay", DAY, "支付宝结算 2026-11-27",
              (Posting.debit("fiscal_bank:icbc-510100", 25_844),
               Posting.debit("gateway_fees:alipay", 156),
               Posting.credit("gateway_clearing:alipay", 26_000)), ref_type="demo"),
        Entry("demo-refund-2", DAY, "护照签发退款 (申请撤回)",
              (Posting.debit("treasury_payable:510100-city", 6_000),
               Posting.debit("treasury_payable:510000-province", 3_600),
               Posting.debit("treasury_payable:100000-central", 2_400),
               Posting.credit("gateway_clearing:wechatpay", 12_000)), ref_type="demo"),
        Entry("demo-suspense-1", DAY, "银行到账 无法识别",
              (Posting.debit("fiscal_bank:icbc-510100", 5_000),
               Posting.credit("suspense", 5_000)), ref_type="demo"),
    ]
    for entry in steps:
        posted = ledger.post(entry)
        note = "already posted" if posted.replayed else "posted"
        print(f"  entry {posted.id:>3}  {note:<14} {entry.description}")
    print()


def _print_trial_balance(ledger: LedgerService) -> None:
    print("== trial balance")
    tb = ledger.trial_balance()
    for row in tb.rows:
        net = row.debits - row.credits
        dr, cr = (format_fen(net), "") if net > 0 else ("", format_fen(-net) if net else "")
        print(f"  {row.code:<36} {row.type:<10} {dr:>12} {cr:>12}")
    for currency, (dr, cr) in tb.totals().items():
        print(f"  {'total ' + currency:<47} {format_fen(dr):>12} {format_fen(cr):>12}")
    print(f"  balanced: {'yes' if tb.balanced else 'NO'}\n")


def _print_verify(ledger: LedgerService) -> None:
    report = ledger.verify()
    outcome = "OK"
    if not report.ok:
        entry_id, reason = report.failures[0]
        outcome = f"FAILED at entry {entry_id}: {reason}"
    print("== verify (hash chain, content hashes, balances)")
    print(f"  entries {report.entries}, sealed {report.sealed}, unsealed {report.unsealed}: "
          f"{outcome}\n")


def _write_export(runtime) -> None:  # type: ignore[no-untyped-def]
    try:
        from clearing.ledger.export import export_beancount
    except ImportError:  # pragma: no cover
        return
    path = Path(runtime.settings.var_dir) / "demo-ledger.beancount"
    with transaction(runtime.sessions) as session, path.open("w", encoding="utf-8") as out:
        export_beancount(session, out)
    print(f"== beancount export written to {path} (check it with: bean-check {path})")
