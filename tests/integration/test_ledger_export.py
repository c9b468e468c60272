"""The beancount export, checked by beancount itself (its loader and ``bean-check``).

beancount is an independent implementation of double entry: it re-parses our amounts, re-sums
every account and checks every transaction balances. Its balances must equal ours to the fen.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

from beancount import loader
from beancount.core import account as bc_account
from beancount.core import data, realization

from clearing.db import transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.export import account_code, account_name, export_beancount
from clearing.ledger.repository import LedgerRepository
from clearing.ledger.service import LedgerService
from clearing.split import split_amount

D = date
CITY, PROVINCE, JINJIANG = "510100-city", "510000-province", "510104-jinjiang"
CHENGDU_CN = "成都市财政局"  # a qualifier beancount's plain syntax cannot hold: escaped
BANK = "fiscal_bank:icbc-5101"
TRICKY = '交通违法罚款 "川A·12345" 含滞纳金 \\ 备注\n第二行'


def payment(key, gateway, amount, shares, *, on, description, **kw):
    """Dr gateway_clearing / Cr treasury_payable per treasury, split by basis points."""
    parts = split_amount(amount, shares)
    legs = [Posting.debit(f"gateway_clearing:{gateway}", amount)]
    legs += [Posting.credit(f"treasury_payable:{t}", fen) for t, fen in parts.items() if fen]
    return Entry(key, on, description, tuple(legs), ref_type="payment", ref_id=key, **kw)


def build_ledger(db):
    """A few days of realistic activity; returns the posted entries by key."""
    posted = {}

    def post(entry):
        with transaction(db.sessions) as s:
            posted[entry.idempotency_key] = LedgerService(s).post(entry)

    post(
        payment(
            "pay-1",
            "alipay",
            26_000,
            {CITY: 6000, PROVINCE: 4000},
            on=D(2026, 11, 10),
            description=TRICKY,
            metadata={"notice": "5101002026000001", "late_fee": 6000},
        )
    )
    post(
        payment(
            "pay-2",
            "alipay",
            10_001,
            {CITY: 6000, PROVINCE: 4000},
            on=D(2026, 11, 10),
            description="排污费 'single' and \"double\" quotes",
        )
    )
    post(
        payment(
            "pay-3",
            "wechatpay",
            33_333,
            {CITY: 3334, PROVINCE: 3333, JINJIANG: 3333},
            on=D(2026, 11, 11),
            description="不动产登记费",
        )
    )
    post(
        payment(
            "pay-4",
            "unionpay",
            5_000,
            {CHENGDU_CN: 10_000},
            on=D(2026, 11, 11),
            description="考试报名费",
        )
    )
    post(
        payment(
            "pay-5",
            "unionpay",
            12_345,
            {JINJIANG: 10_000},
            on=D(2026, 11, 11),
            description="护照工本费",
        )
    )
    # The settlement of alipay's two payments, less a 0.6% fee.
    fee = 217
    post(
        Entry(
            "settle-alipay-20261111",
            D(2026, 11, 11),
            "支付宝结算 2026-11-10",
            (
                Posting.debit(BANK, 36_001 - fee),
                Posting.debit("gateway_fees:alipay", fee),
                Posting.credit("gateway_clearing:alipay", 36_001),
            ),
            ref_type="settlement",
            ref_id="alipay-20261110",
        )
    )
    # A refund of part of pay-3 to the payer.
    post(
        Entry(
            "refund-pay-3",
            D(2026, 11, 12),
            "退款：重复缴费",
            (
                Posting.debit(f"treasury_payable:{CITY}", 11_112),
                Posting.credit("gateway_clearing:wechatpay", 11_112),
            ),
            ref_type="refund",
            ref_id="pay-3",
        )
    )
    # pay-5 was posted in error: reversed.
    with transaction(db.sessions) as s:
        posted["rev-pay-5"] = LedgerService(s).reverse(
            posted["pay-5"].id, idempotency_key="rev-pay-5", business_date=D(2026, 11, 12)
        )
    # Money arrived at the bank that nothing explains yet.
    post(
        Entry(
            "bank-credit-88",
            D(2026, 11, 12),
            "银行来账（未识别）",
            (Posting.debit(BANK, 9_900), Posting.credit("suspense", 9_900)),
            ref_type="bank-statement",
            ref_id="icbc-5101/2026-11-12/88",
        )
    )
    # An account that exists but was never used.
    with transaction(db.sessions) as s:
        LedgerRepository(s).accounts(["refunds_payable"])
    return posted


def export_text(db) -> str:
    buf = io.StringIO()
    with transaction(db.sessions) as s:
        export_beancount(s, buf)
    return buf.getvalue()


def our_balances(db) -> dict[str, int]:
    """beancount name -> debits minus credits in fen, from LedgerService."""
    with transaction(db.sessions) as s:
        return {
            account_name(b.code, b.type): b.debits - b.credits for b in LedgerService(s).balances()
        }


def to_fen(number: Decimal) -> int:
    fen = number.scaleb(2)
    assert fen == fen.to_integral_value(), number  # no fraction of a fen anywhere
    return int(fen)


def test_export_passes_beancount_and_balances_agree(db, tmp_path):
    posted = build_ledger(db)
    text = export_text(db)
    path = tmp_path / "ledger.beancount"
    path.write_text(text, encoding="utf-8")

    entries, errors, options = loader.load_file(str(path))
    assert errors == []
    assert options["operating_currency"] == ["CNY"]

    bean_check = Path(sys.executable).parent / "bean-check"
    bean_check = bean_check if bean_check.exists() else shutil.which("bean-check")
    if bean_check:
        run = subprocess.run([str(bean_check), str(path)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr

    txns = [e for e in entries if isinstance(e, data.Transaction)]
    assert len(txns) == len(posted) == 9
    # beancount's own sums of the exported postings, account by account
    summed: dict[str, int] = defaultdict(int)
    for txn in txns:
        for p in txn.postings:
            assert p.units.currency == "CNY"
            summed[p.account] += to_fen(p.units.number)
    ours = our_balances(db)
    assert {a: v for a, v in ours.items() if v} == {a: v for a, v in summed.items() if v}
    # and the same through beancount's realization tree
    real = realization.realize(entries)
    for name, fen in ours.items():
        units = realization.compute_balance(realization.get(real, name)).get_currency_units("CNY")
        assert to_fen(units.number) == fen, name
    # every account opened, none used before its opening, every balance asserted
    opens = {e.account: e for e in entries if isinstance(e, data.Open)}
    assert set(opens) == set(ours)
    assert all(o.currencies == ["CNY"] for o in opens.values())
    assert {e.account for e in entries if isinstance(e, data.Balance)} == set(ours)
    assert all(bc_account.is_valid(name) for name in ours)
    assert {account_code(name) for name in ours} >= {
        "gateway_clearing:alipay",
        f"treasury_payable:{CHENGDU_CN}",
        BANK,
        "refunds_payable",
    }


def test_export_content(db):
    posted = build_ledger(db)
    text = export_text(db)
    entries, errors, _ = loader.load_string(text)
    assert errors == []
    assert 'option "operating_currency" "CNY"' in text
    assert "Assets:GatewayClearing:Alipay" in text
    assert "Liabilities:TreasuryPayable:510100-City" in text
    assert "Assets:FiscalBank:Icbc-5101" in text
    assert "Expenses:GatewayFees:Alipay" in text
    # transactions in business date then id order, with their metadata
    txns = [e for e in entries if isinstance(e, data.Transaction)]
    ids = [int(t.meta["entry_id"]) for t in txns]
    file_order = [int(m) for m in re.findall(r'entry_id: "(\d+)"', text)]
    assert ids == file_order
    assert [(t.date, int(t.meta["entry_id"])) for t in txns] == sorted(
        (t.date, int(t.meta["entry_id"])) for t in txns
    )
    by_key = {t.meta["idempotency_key"]: t for t in txns}
    assert set(by_key) == set(posted)
    first = by_key["pay-1"]
    assert first.narration == TRICKY  # quotes, backslash, newline and Chinese survive
    assert first.meta["ref_type"] == "payment" and first.meta["ref_id"] == "pay-1"
    assert first.meta["metadata"] == '{"late_fee": 6000, "notice": "5101002026000001"}'
    assert int(first.meta["entry_id"]) == posted["pay-1"].id
    assert by_key["rev-pay-5"].meta["reverses_id"] == str(posted["pay-5"].id)
    # amounts exactly from fen: 260.00 split 156.00 / 104.00; 100.01 split 60.01 / 40.00
    amounts = {(p.account, p.units.number) for p in first.postings}
    assert amounts == {
        ("Assets:GatewayClearing:Alipay", Decimal("260.00")),
        ("Liabilities:TreasuryPayable:510100-City", Decimal("-156.00")),
        ("Liabilities:TreasuryPayable:510000-Province", Decimal("-104.00")),
    }
    assert "  Liabilities:TreasuryPayable:510100-City  -60.01 CNY" in text
    # accounts open on their first business date; the unused one on the earliest date
    opens = {e.account: e.date for e in entries if isinstance(e, data.Open)}
    assert opens["Assets:FiscalBank:Icbc-5101"] == D(2026, 11, 11)
    assert opens["Liabilities:Suspense"] == D(2026, 11, 12)
    assert opens["Liabilities:RefundsPayable"] == D(2026, 11, 10)
    assert opens[account_name(f"treasury_payable:{CHENGDU_CN}", "liability")] == D(2026, 11, 11)
    balances = {e.account: e for e in entries if isinstance(e, data.Balance)}
    assert {b.date for b in balances.values()} == {D(2026, 11, 13)}
    assert balances["Assets:FiscalBank:Icbc-5101"].amount.number == Decimal("456.84")
    assert balances["Liabilities:Suspense"].amount.number == Decimal("-99.00")


def test_a_changed_amount_fails_the_balance_assertions(db):
    build_ledger(db)
    text = export_text(db)
    # move one fen between two postings of one transaction: still balanced, wrong balances
    tampered = text.replace(
        "  Assets:GatewayClearing:Alipay  260.00 CNY",
        "  Assets:GatewayClearing:Alipay  259.99 CNY",
        1,
    )
    tampered = tampered.replace(
        "  Liabilities:TreasuryPayable:510100-City  -156.00 CNY",
        "  Liabilities:TreasuryPayable:510100-City  -155.99 CNY",
        1,
    )
    assert tampered.count("259.99") == 1 and tampered.count("-155.99") == 1
    _, errors, _ = loader.load_string(tampered)
    messages = " ".join(e.message for e in errors)
    assert "Balance failed for 'Assets:GatewayClearing:Alipay'" in messages
    assert "Balance failed for 'Liabilities:TreasuryPayable:510100-City'" in messages


def test_empty_ledger_exports_a_valid_file(db):
    text = export_text(db)
    entries, errors, options = loader.load_string(text)
    assert errors == [] and entries == []
    assert options["operating_currency"] == ["CNY"]


def test_parent_account_assertion_covers_its_sub_accounts(db):
    # ``fiscal_bank`` and ``fiscal_bank:icbc-5101`` are parent and child in beancount, whose
    # balance assertion on a parent includes its children.
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        ledger.post(
            Entry(
                "a",
                D(2026, 11, 1),
                "a",
                (Posting.debit("fiscal_bank", 100), Posting.credit("suspense", 100)),
            )
        )
        ledger.post(
            Entry(
                "b", D(2026, 11, 2), "b", (Posting.debit(BANK, 50), Posting.credit("suspense", 50))
            )
        )
    entries, errors, _ = loader.load_string(export_text(db))
    assert errors == []
    balances = {e.account: e.amount.number for e in entries if isinstance(e, data.Balance)}
    assert balances == {
        "Assets:FiscalBank": Decimal("1.50"),
        "Assets:FiscalBank:Icbc-5101": Decimal("0.50"),
        "Liabilities:Suspense": Decimal("-1.50"),
    }
    assert our_balances(db)["Assets:FiscalBank"] == 100
