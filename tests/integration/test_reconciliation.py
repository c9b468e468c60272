"""Reconciliation runs on real databases: a day of payments against its bill and statement."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from clearing.config import Settings
from clearing.db import run_in_transaction, transaction
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments.capture import apply_result
from clearing.payments.models import PaymentAttempt
from clearing.payments.service import PaymentContext, start_attempt
from clearing.routing import DEFAULT_RULES, Router
from gateways.protocol import Channel
from gateways.simulators.alipay import BILL_COLUMNS, LIST_END, LIST_START, _cells, _row, _sum
from gateways.simulators.common import PAID, Order, fee_fen
from notices.receipts import ESeal
from notices.schemas import NoticeCreate
from notices.service import create_notice
from reconciliation.bank_statement import BankEntry, build_camt053
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.service import RunFailed, reconcile_bill, reconcile_statement
from tests.factories import notice_setup
from tests.support.fake_gateway import FakeGateway

DAY = date(2026, 11, 27)
PAID_AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
RATE = Decimal("0.006")
AMOUNT = 20_000


@pytest.fixture
def gateways():
    return {
        "alipay": FakeGateway("alipay"),
        "wechatpay": FakeGateway("wechatpay"),
        "unionpay": FakeGateway("unionpay", Channel.BANK),
    }


@pytest.fixture
def ctx(gateways, tmp_path):
    eseal = ESeal.from_settings(Settings(var_dir=tmp_path, env="test"))
    return PaymentContext(gateways, Router(DEFAULT_RULES), "https://pay.example.gov.cn", eseal)


def make_orders(db, ctx, gateways, tmp_path, n: int) -> list[str]:
    """``n`` notices of 200.00 yuan, each with a started alipay attempt; returns order ids."""
    with transaction(db.sessions) as s:
        who, first = notice_setup(s, tmp_path, decision_date=date(2026, 11, 20))
        codes = [first.payment_code]
        for i in range(n - 1):
            body = {
                "kind": "traffic_fine",
                "payer": {"name": "张小三"},
                "items": [{"item_code": "TF-RED-LIGHT"}],
                "reference": f"REF-{i + 2}",
                "description": "test notice",
                "decision_date": "2026-11-20",
            }
            from notices.privacy import PayerVault

            vault = PayerVault.from_settings(Settings(var_dir=tmp_path, env="test"))
            codes.append(
                create_notice(
                    s, who, NoticeCreate.model_validate(body), vault, today=DAY
                ).payment_code
            )
    return [
        run_in_transaction(
            db.sessions, lambda s, c=c: start_attempt(s, ctx, c, "wallet", PAID_AT)
        ).order_id
        for c in codes
    ]


def capture(db, ctx, gateways, order_id):
    result = gateways["alipay"].pay(order_id, PAID_AT)
    run_in_transaction(
        db.sessions, lambda s: apply_result(s, result, source="notify", eseal=ctx.eseal)
    )


def alipay_bill(rows: list[tuple[str, int, int]], *, footer_delta: int = 0) -> bytes:
    """A GBK Alipay bill, written with the simulator's own cell and row functions;
    ``rows`` are (order id, amount fen, fee fen)."""
    cells = [
        _cells(
            Order(o, amt, "交通罚款", "", "", PAID_AT, PAID, f"T{o}", PAID_AT),
            "交易",
            PAID_AT,
            PAID_AT,
            amt,
            "",
            -fee,
        )
        for o, amt, fee in rows
    ]
    total = _sum(cells)
    if footer_delta:
        from clearing.money import format_fen, parse_fen

        total = format_fen(parse_fen(total) + footer_delta)
    lines = [
        "#支付宝业务明细查询",
        "#账号：[2088102177846880]",
        "#起始日期：[2026年11月27日 00:00:00]   终止日期：[2026年11月28日 00:00:00]",
        LIST_START,
        BILL_COLUMNS,
        *(_row(c) for c in cells),
        LIST_END,
        f"#交易合计：{len(cells)}笔，商家实收共：{total}元，商家优惠共：0.00元",
        "#退款合计：0笔，商家实收退款共：0.00元，商家优惠退款共：0.00元",
        "#导出时间：[2026年11月28日 09:00:00]",
    ]
    return ("\n".join(lines) + "\n").encode("gbk")


FEE = fee_fen(AMOUNT, RATE)  # 120
NAME = "alipay_2088102177846880_20261127.csv"


def day_setup(db, ctx, gateways, tmp_path):
    """o1 matched, o2 fee mismatch, o3 missing in the bill, o4 twice in the bill, o5 lost
    notify (paid at the gateway, never captured)."""
    orders = make_orders(db, ctx, gateways, tmp_path, 5)
    for o in orders[:4]:
        capture(db, ctx, gateways, o)
    gateways["alipay"].pay(orders[4], PAID_AT)  # the notify never arrives
    o1, o2, _o3, o4, o5 = orders
    rows = [
        (o1, AMOUNT, FEE),
        (o2, AMOUNT, FEE - 1),
        (o4, AMOUNT, FEE),
        (o4, AMOUNT, FEE),
        (o5, AMOUNT, FEE),
    ]
    return orders, rows


def balances(db):
    with transaction(db.sessions) as s:
        return {b.code: b.balance for b in LedgerService(s).balances()}


def count(db, model):
    with transaction(db.sessions) as s:
        return s.scalar(select(func.count()).select_from(model))


def items(db, run_id):
    with transaction(db.sessions) as s:
        return sorted(
            (i.outcome, i.order_id, i.line_no is None, i.detail, i.journal_entry_id)
            for i in s.scalars(
                select(ReconciliationItem).where(ReconciliationItem.run_id == run_id)
            )
        )


def run_state(db, run_id):
    with transaction(db.sessions) as s:
        return s.get(ReconciliationRun, run_id)


def ledger_ok(db):
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        ledger.seal()
    with transaction(db.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.verify().ok
        assert ledger.trial_balance().balanced


def bill(db, ctx, data, name=NAME):
    return reconcile_bill(
        db.sessions, ctx, data=data, filename=name, started_by="tester", fee_rate=RATE
    )


def test_a_day_end_to_end(db, ctx, gateways, tmp_path):
    orders, rows = day_setup(db, ctx, gateways, tmp_path)
    o1, o2, o3, o4, o5 = orders
    data = alipay_bill(rows)
    run_id = bill(db, ctx, data)
    got = items(db, run_id)
    outcomes = sorted((o, order, missing) for o, order, missing, _, _ in got)
    assert outcomes == sorted(
        [
            ("matched", o1, False),
            ("fee_mismatch", o2, False),
            ("missing_external", o3, True),
            ("matched", o4, False),
            ("duplicate", o4, False),
            ("missing_internal", o5, False),
        ]
    )
    lost = next(i for i in got if i[0] == "missing_internal")
    assert lost[3] == "captured by reconciliation" and lost[4] is not None
    with transaction(db.sessions) as s:
        attempt = s.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == o5)).one()
        assert attempt.state == "succeeded" and attempt.journal_entry_id == lost[4]
    run = run_state(db, run_id)
    assert run.state == "succeeded" and run.line_count == 5 and run.started_by == "tester"
    assert run.counts == {
        "duplicate": 1,
        "fee_mismatch": 1,
        "matched": 2,
        "missing_external": 1,
        "missing_internal": 1,
    }
    assert run.totals["bill_net"] == 5 * AMOUNT - (5 * FEE - 1)
    assert balances(db)["gateway_clearing:alipay"] == 5 * AMOUNT

    # idempotent: the same file again is the same run and posts nothing
    entries = count(db, JournalEntry)
    assert bill(db, ctx, data) == run_id
    assert count(db, JournalEntry) == entries and count(db, ReconciliationRun) == 1

    # the statement: the settlement and an unexplained credit
    net = run.totals["bill_net"]
    camt = build_camt053(
        [
            BankEntry(net, "SETTLE ALIPAY 20261127", "B1"),
            BankEntry(5_000, "TRANSFER FROM SOMEONE", "B2"),
            BankEntry(-300, "BANK CHARGE", "B3"),
        ],
        "icbc-510100",
        DAY,
    )
    st_id = reconcile_statement(
        db.sessions, data=camt, filename="camt053_20261127.xml", started_by="tester"
    )
    st_items = items(db, st_id)
    assert [i[0] for i in st_items] == ["other", "settled", "unexplained_credit"]
    b = balances(db)
    assert b["fiscal_bank:icbc-510100"] == net + 5_000
    assert b["gateway_fees:alipay"] == 5 * FEE - 1
    assert b["gateway_clearing:alipay"] == 0
    assert b["suspense"] == 5_000
    assert (
        reconcile_statement(
            db.sessions, data=camt, filename="camt053_20261127.xml", started_by="tester"
        )
        == st_id
    )

    # a corrected bill (o2's fee right, o4 once): the earlier run is superseded, the settlement
    # it fed is reversed and posted again from the corrected totals
    fixed = alipay_bill(
        [(o1, AMOUNT, FEE), (o2, AMOUNT, FEE), (o4, AMOUNT, FEE), (o5, AMOUNT, FEE)]
    )
    new_id = bill(db, ctx, fixed)
    assert new_id != run_id
    old = run_state(db, run_id)
    assert old.state == "superseded" and old.superseded_by_id == new_id
    b = balances(db)
    assert b["fiscal_bank:icbc-510100"] == net + 5_000  # what arrived did not change
    assert b["gateway_fees:alipay"] == 4 * FEE
    # the bank paid the old (duplicated) net: more than the corrected bill's net -> suspense
    assert b["suspense"] == 5_000 + (net - (4 * AMOUNT - 4 * FEE))
    assert b["gateway_clearing:alipay"] == AMOUNT  # o3: captured, never settled
    ledger_ok(db)


def test_a_broken_footer_fails_the_run_and_posts_nothing(db, ctx, gateways, tmp_path):
    _, rows = day_setup(db, ctx, gateways, tmp_path)
    before, entries = balances(db), count(db, JournalEntry)
    with pytest.raises(RunFailed) as info:
        bill(db, ctx, alipay_bill(rows, footer_delta=1))
    run = run_state(db, info.value.run_id)
    assert run.state == "failed" and "合计" in (run.error or "")
    assert balances(db) == before and count(db, JournalEntry) == entries
    assert count(db, ReconciliationItem) == 0
    ledger_ok(db)


# a worker killed mid-run ---------------------------------------------------------------------


def _unionpay_bill(n: int) -> bytes:
    details = [f"D|PK{i:010d}|Q{i:012d}|20261127100000|01|1000|3|997|00" for i in range(n)]
    return (
        "\n".join(
            [f"H|898510148990001|20261127|{n}", *details, f"T|{n}|{n * 1000}|{n * 3}|{n * 997}"]
        )
        + "\n"
    ).encode()


def _worker(url: str, data: bytes) -> None:  # pragma: no cover - runs in a child process
    from clearing.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    ctx = PaymentContext(
        {"unionpay": FakeGateway("unionpay", Channel.BANK)}, Router(DEFAULT_RULES), "https://x"
    )
    reconcile_bill(
        make_sessionmaker(engine),
        ctx,
        data=data,
        filename="unionpay_x_20261127.txt",
        started_by="killed",
        fee_rate=Decimal("0.003"),
    )


def test_a_killed_worker_leaves_nothing_and_the_rerun_converges(pg):
    data = _unionpay_bill(200_000)
    proc = multiprocessing.get_context("spawn").Process(target=_worker, args=(pg.url, data))
    proc.start()
    # kill it inside the posting transaction: while it inserts the items
    deadline = time.monotonic() + 240
    posting = False
    while time.monotonic() < deadline and not posting:
        with pg.engine.connect() as conn:
            posting = bool(
                conn.execute(
                    text(
                        "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND "
                        "query LIKE '%INSERT INTO reconciliation_items%' AND pid <> "
                        "pg_backend_pid() AND datname = current_database()"
                    )
                ).first()
            )
        time.sleep(0.05)
    assert posting, "the worker never reached the posting transaction"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    with transaction(pg.sessions) as s:
        assert s.scalars(select(ReconciliationRun.state)).all() == ["running"]
    assert count(pg, ReconciliationItem) == 0
    gw = {"unionpay": FakeGateway("unionpay", Channel.BANK)}
    ctx = PaymentContext(gw, Router(DEFAULT_RULES), "https://x")
    run_id = reconcile_bill(
        pg.sessions,
        ctx,
        data=data,
        filename="unionpay_x_20261127.txt",
        started_by="rerun",
        fee_rate=Decimal("0.003"),
    )
    run = run_state(pg, run_id)
    assert run.state == "succeeded" and run.line_count == 200_000
    assert run.counts == {"missing_internal": 200_000}  # nobody paid these orders on our side
    assert count(pg, ReconciliationRun) == 1 and count(pg, ReconciliationItem) == 200_000
    assert (
        reconcile_bill(
            pg.sessions,
            ctx,
            data=data,
            filename="unionpay_x_20261127.txt",
            started_by="again",
            fee_rate=Decimal("0.003"),
        )
        == run_id
    )
    ledger_ok(pg)


def test_an_unknown_format_raises_without_a_run(db, ctx):
    from reconciliation.parsers import StatementError

    with pytest.raises(StatementError):
        bill(db, ctx, b"hello", "x_20261127.csv")
    assert count(db, ReconciliationRun) == 0


# the set-based SQL classifier agrees with the pure one ----------------------------------------


def test_sql_classification_equals_the_pure_classifier(pg, tmp_path):
    import random as _random

    from sqlalchemy import insert

    from clearing.ledger.core import Entry, Posting
    from clearing.payments.models import Refund
    from reconciliation import matching
    from reconciliation import repository as repo
    from reconciliation.lines import LineKind, StatementLine

    rnd = _random.Random(11)
    days = [DAY.replace(day=26), DAY, DAY.replace(day=28)]
    with transaction(pg.sessions) as s:
        _, notice = notice_setup(s, tmp_path, decision_date=date(2026, 11, 20))
        entry_ids = [
            LedgerService(s)
            .post(
                Entry(
                    f"e{d}",
                    d,
                    "x",
                    (
                        Posting.debit("gateway_clearing:alipay", 1),
                        Posting.credit("treasury_payable:510100-city", 1),
                    ),
                )
            )
            .id
            for d in days
        ]
        attempts, refunds, lines = [], [], []
        for i in range(300):
            amount = rnd.randint(1, 99_999)
            d = rnd.choice([0, 1, 1, 1, 1, 2])
            attempts.append(
                {
                    "order_id": f"O{i:04d}",
                    "notice_id": notice.id,
                    "gateway": "alipay",
                    "channel": "wallet",
                    "routing_reason": "t",
                    "state": rnd.choice(["succeeded", "succeeded", "duplicate"]),
                    "amount": amount,
                    "principal": amount,
                    "late_fee": 0,
                    "business_date": DAY,
                    "expires_at": PAID_AT,
                    "gateway_txn_id": f"T{i}",
                    "paid_at": PAID_AT,
                    "journal_entry_id": entry_ids[d],
                    "created_at": PAID_AT,
                    "updated_at": PAID_AT,
                }
            )
        ids = s.execute(
            insert(PaymentAttempt).returning(
                PaymentAttempt.id, PaymentAttempt.amount, PaymentAttempt.order_id
            ),
            attempts,
        ).all()
        for n, (pk, amount, order) in enumerate(ids):
            if n % 5 == 0 and amount > 3:
                for k, part in enumerate([amount // 3, amount // 3]):
                    refunds.append(
                        {
                            "refund_id": f"R{n}-{k}",
                            "notice_id": notice.id,
                            "attempt_id": pk,
                            "kind": "requested",
                            "state": "succeeded",
                            "amount": part,
                            "reason": "t",
                            "journal_entry_id": entry_ids[rnd.choice([1, 1, 2])],
                            "created_at": PAID_AT.replace(minute=k),
                            "updated_at": PAID_AT,
                        }
                    )
        s.execute(insert(Refund), refunds)
        line_no = 0

        def add(order, amount, fee, kind=LineKind.PAYMENT, refund_id=None, on=DAY):
            nonlocal line_no
            line_no += 1
            lines.append(
                StatementLine(
                    "alipay",
                    line_no,
                    f"X{line_no}",
                    order,
                    amount,
                    fee,
                    "CNY",
                    on,
                    None,
                    kind,
                    "",
                    refund_id=refund_id,
                )
            )

        for pk, amount, order in ids:
            roll = rnd.random()
            if roll < 0.1:
                continue
            fee = matching.payment_fee(amount, RATE) + (1 if roll > 0.9 else 0)
            add(
                order,
                amount + (1 if 0.8 < roll < 0.85 else 0),
                fee,
                on=DAY if roll < 0.95 else DAY.replace(day=28),
            )
            if 0.5 < roll < 0.55:
                add(order, amount, fee)
        for r in refunds:
            total = matching.payment_fee(next(a for _, a, o in ids if _ == r["attempt_id"]), RATE)
            add(None, -r["amount"], -(total // 3), LineKind.REFUND, r["refund_id"])
        for i in range(20):
            add(f"N{i}", 500, 2)
        rnd.shuffle(lines)
        run = ReconciliationRun(
            source="alipay",
            kind="bill",
            business_date=DAY,
            file_name="x",
            file_sha256="0" * 64,
            file_format="alipay",
            state="running",
            started_by="t",
            started_at=PAID_AT,
            counts={},
            totals={},
            line_count=0,
        )
        s.add(run)
        s.flush()
        repo.create_stage(s)
        for _ in repo.copy_lines(s, iter(lines)):
            pass
        pure = list(
            matching.classify(
                repo.staged_lines(s, "alipay"),
                repo.records(s, "alipay", DAY),
                business_date=DAY,
                fee_rate=RATE,
                presorted=True,
            )
        )
        assert pure == list(
            matching.classify(
                lines, list(repo.records(s, "alipay", DAY)), business_date=DAY, fee_rate=RATE
            )
        )
        repo.classify_staged(s, run.id, "alipay", DAY, RATE)
        sql = s.execute(
            select(
                ReconciliationItem.line_no,
                ReconciliationItem.outcome,
                ReconciliationItem.kind,
                ReconciliationItem.order_id,
                ReconciliationItem.external_id,
                ReconciliationItem.amount,
                ReconciliationItem.expected_amount,
                ReconciliationItem.fee,
                ReconciliationItem.expected_fee,
                ReconciliationItem.detail,
            ).where(ReconciliationItem.run_id == run.id)
        ).all()
        want = sorted(
            (
                o.line_no or 0,
                o.outcome,
                o.kind,
                o.order_id,
                o.external_id,
                o.amount,
                o.expected_amount,
                o.fee,
                o.expected_fee,
                o.detail,
            )
            for o in pure
        )
        assert sorted((r[0] or 0, *r[1:]) for r in sql) == want
        assert {o.outcome for o in pure} >= {
            "matched",
            "fee_mismatch",
            "amount_mismatch",
            "duplicate",
            "cutoff",
            "missing_internal",
            "missing_external",
        }
        s.rollback()


# the nightly job ------------------------------------------------------------------------------


class BillingGateway(FakeGateway):
    """A fake gateway that also hands out a daily bill."""

    bill: bytes = b""
    bill_name: str = ""

    def fetch_bill(self, business_date):  # type: ignore[override]
        from gateways.protocol import BillFile

        return BillFile(self.name, business_date, self.bill_name, self.bill)


def test_the_nightly_job_reconciles_bills_then_the_statement(db, ctx, gateways, tmp_path):
    from types import SimpleNamespace

    from reconciliation import filestore
    from reconciliation.tasks import run_night

    orders = make_orders(db, ctx, gateways, tmp_path, 2)
    for o in orders:
        capture(db, ctx, gateways, o)
    alipay = BillingGateway(
        "alipay", orders=gateways["alipay"].orders, paid=gateways["alipay"].paid
    )
    alipay.bill = alipay_bill([(o, AMOUNT, FEE) for o in orders])
    alipay.bill_name = NAME
    unionpay = BillingGateway("unionpay", Channel.BANK)
    unionpay.bill = b"H|898510148990001|20261127|0\nT|0|0|0|0\n"
    unionpay.bill_name = "unionpay_898510148990001_20261127.txt"
    night_ctx = PaymentContext(
        {"alipay": alipay, "unionpay": unionpay}, ctx.router, ctx.public_base_url, ctx.eseal
    )
    settings = Settings(var_dir=tmp_path, env="test")
    runtime = SimpleNamespace(settings=settings, sessions=db.sessions)
    out = run_night(runtime, night_ctx, DAY, "test")
    assert set(out) == {"alipay", "unionpay", "statement"}
    assert run_night(runtime, night_ctx, DAY, "test") == out  # idempotent
    assert filestore.open_file(settings, filestore.sha256_of(alipay.bill)) == alipay.bill
    st = items(db, out["statement"])
    assert [i[0] for i in st] == ["settled"]
    b = balances(db)
    assert b["fiscal_bank:icbc-510100"] == 2 * (AMOUNT - FEE)
    assert b["gateway_clearing:alipay"] == 0
    ledger_ok(db)


def test_temp_buffers_are_sized_on_a_fresh_connection_and_left_alone_after_a_temp_table(pg):
    from reconciliation.repository import TEMP_BUFFERS, size_temp_buffers

    with pg.engine.connect() as conn:
        default = conn.execute(text("SHOW temp_buffers")).scalar()
        conn.rollback()
        conn.execute(text("CREATE TEMP TABLE t_used (x int)"))
        conn.execute(text("INSERT INTO t_used VALUES (1)"))  # the session's temp buffers in use
        conn.commit()
        size_temp_buffers(conn)  # refused by PostgreSQL: logged, not raised
        assert conn.execute(text("SHOW temp_buffers")).scalar() == default
        conn.invalidate()
    with pg.engine.connect() as conn:
        size_temp_buffers(conn)
        assert conn.execute(text("SHOW temp_buffers")).scalar() == TEMP_BUFFERS
        conn.invalidate()  # as the run does: the server frees the buffers with the session
