"""A worked example, step by step, in the manner of django-hordak's accounting examples.

The story: three people pay a traffic fine of 200.00 yuan plus a 60.00 late fee (260.00 each),
shared 60/40 between the city treasury (510100) and the province treasury (510000). Two pay
with Alipay, one with WeChat Pay. Alipay settles into the fiscal special account at ICBC less its
fee; the WeChat payer is refunded; the city's share is remitted to the city treasury.

Balances are in fen, each in the account's normal direction (assets and expenses: debit minus
credit; liabilities: credit minus debit), written out literally after every step.
"""

from __future__ import annotations

from datetime import date

from clearing.db import transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.service import LedgerService
from clearing.split import split_amount

CITY = "treasury_payable:510100-city"
PROVINCE = "treasury_payable:510000-province"
ALIPAY = "gateway_clearing:alipay"
WECHAT = "gateway_clearing:wechatpay"
BANK = "fiscal_bank:icbc-5101"
FEES = "gateway_fees:alipay"
SHARES = {CITY: 6000, PROVINCE: 4000}  # basis points


def post(db, entry: Entry) -> int:
    with transaction(db.sessions) as s:
        return LedgerService(s).post(entry).id


def fine_payment(key: str, gateway_account: str, on: date) -> Entry:
    fine, late_fee = 20_000, 6_000
    parts = split_amount(fine + late_fee, SHARES)
    assert parts == {CITY: 15_600, PROVINCE: 10_400}
    return Entry(
        key,
        on,
        f"交通违法罚款 {key}（含滞纳金）",
        (
            Posting.debit(gateway_account, fine + late_fee),
            *(Posting.credit(account, fen) for account, fen in parts.items()),
        ),
        metadata={"fine": fine, "late_fee": late_fee},
        ref_type="payment",
        ref_id=key,
    )


def balances(db, as_of: date | None = None) -> dict[str, int]:
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.trial_balance(as_of=as_of).balanced
        return {b.code: b.balance for b in ledger.balances(as_of=as_of)}


def test_traffic_fines_from_payment_to_remittance(db):
    # 1. 11-10: the first fine is paid with Alipay. Alipay owes us 260.00; we owe the city
    #    156.00 and the province 104.00.
    post(db, fine_payment("fine-1", ALIPAY, date(2026, 11, 10)))
    assert balances(db) == {ALIPAY: 26_000, CITY: 15_600, PROVINCE: 10_400}

    # 2. 11-10: the second fine, with WeChat Pay.
    post(db, fine_payment("fine-2", WECHAT, date(2026, 11, 10)))
    assert balances(db) == {ALIPAY: 26_000, WECHAT: 26_000, CITY: 31_200, PROVINCE: 20_800}

    # 3. 11-10: the third fine, with Alipay again.
    post(db, fine_payment("fine-3", ALIPAY, date(2026, 11, 10)))
    assert balances(db) == {ALIPAY: 52_000, WECHAT: 26_000, CITY: 46_800, PROVINCE: 31_200}

    # 4. 11-11: Alipay settles its 520.00 into the fiscal account, keeping a 0.6% fee (3.12).
    #    Dr fiscal_bank 516.88, Dr gateway_fees 3.12 / Cr gateway_clearing 520.00.
    post(
        db,
        Entry(
            "settle-alipay-1110",
            date(2026, 11, 11),
            "支付宝 11-10 结算",
            (Posting.debit(BANK, 51_688), Posting.debit(FEES, 312), Posting.credit(ALIPAY, 52_000)),
            ref_type="settlement",
            ref_id="alipay-1110",
        ),
    )
    assert balances(db) == {
        ALIPAY: 0,
        WECHAT: 26_000,
        BANK: 51_688,
        FEES: 312,
        CITY: 46_800,
        PROVINCE: 31_200,
    }

    # 5. 11-12: the WeChat payer paid twice by mistake and is refunded in full, before WeChat
    #    settled: both treasuries' shares go back and WeChat owes us nothing.
    post(
        db,
        Entry(
            "refund-fine-2",
            date(2026, 11, 12),
            "退款：fine-2 重复缴费",
            (
                Posting.debit(CITY, 15_600),
                Posting.debit(PROVINCE, 10_400),
                Posting.credit(WECHAT, 26_000),
            ),
            ref_type="refund",
            ref_id="fine-2",
        ),
    )
    assert balances(db) == {
        ALIPAY: 0,
        WECHAT: 0,
        BANK: 51_688,
        FEES: 312,
        CITY: 31_200,
        PROVINCE: 20_800,
    }

    # 6. 11-13: the city's 312.00 is remitted from the fiscal account to the city treasury.
    post(
        db,
        Entry(
            "remit-510100-1113",
            date(2026, 11, 13),
            "划缴市级国库",
            (Posting.debit(CITY, 31_200), Posting.credit(BANK, 31_200)),
            ref_type="remittance",
            ref_id="510100-1113",
        ),
    )
    final = {ALIPAY: 0, WECHAT: 0, BANK: 20_488, FEES: 312, CITY: 0, PROVINCE: 20_800}
    assert balances(db) == final

    # The fee is the platform's expense: the bank holds 204.88 but the province is owed 208.00.
    # Debit balances (bank 204.88 + fees 3.12) equal credit balances (province 208.00).
    with transaction(db.sessions) as s:
        tb = LedgerService(s).trial_balance()
    assert tb.totals() == {"CNY": (20_800, 20_800)}
    assert tb.balanced

    # Looking back: as of 11-10 only the three payments; as of 11-11 the settlement too.
    assert balances(db, as_of=date(2026, 11, 10)) == {
        ALIPAY: 52_000,
        WECHAT: 26_000,
        BANK: 0,
        FEES: 0,
        CITY: 46_800,
        PROVINCE: 31_200,
    }
    assert balances(db, as_of=date(2026, 11, 11)) == {
        ALIPAY: 0,
        WECHAT: 26_000,
        BANK: 51_688,
        FEES: 312,
        CITY: 46_800,
        PROVINCE: 31_200,
    }
    assert balances(db, as_of=date(2026, 11, 9)) == dict.fromkeys(final, 0)

    # Seal the six entries into the hash chain; the chain and every entry verify.
    with transaction(db.sessions) as s:
        assert LedgerService(s).seal() == 6
    with transaction(db.sessions) as s:
        report = LedgerService(s).verify()
    assert report.ok, report.failures
    assert (report.entries, report.sealed, report.unsealed) == (6, 6, 0)
    assert balances(db) == final  # sealing moves no money
