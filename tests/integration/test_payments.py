"""Payments on real databases: attempts, exactly-once capture, duplicates, refunds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from threading import Barrier

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from clearing.config import Settings
from clearing.db import run_in_transaction, transaction
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments import refunds
from clearing.payments.capture import apply_result
from clearing.payments.models import PaymentAttempt, Refund
from clearing.payments.service import NoticeNotPayable, PaymentContext, start_attempt
from clearing.routing import DEFAULT_RULES, Router
from gateways.protocol import Channel, GatewayStatus, PaymentResult
from notices.models import Notice
from notices.receipt_models import Receipt
from notices.receipts import ESeal, verify_receipt
from tests.factories import notice_setup
from tests.support.fake_gateway import FakeGateway

PAID_AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
ESEAL = ESeal(Ed25519PrivateKey.generate())


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


@pytest.fixture
def notice(db, tmp_path):
    with transaction(db.sessions) as s:
        who, notice = notice_setup(s, tmp_path, decision_date=date(2026, 10, 17))
        return who, notice.id, notice.payment_code


def start(db, ctx, code, channel="wallet", now=PAID_AT):
    return run_in_transaction(db.sessions, lambda s: start_attempt(s, ctx, code, channel, now))


def apply(db, result, source="notify", eseal=None):
    return run_in_transaction(
        db.sessions, lambda s: apply_result(s, result, source=source, eseal=eseal or ESEAL)
    )


def balances(db):
    with transaction(db.sessions) as s:
        return {b.code: b.balance for b in LedgerService(s).balances()}


def entry_count(db):
    with transaction(db.sessions) as s:
        return s.scalar(select(func.count()).select_from(JournalEntry))


def test_attempt_fixes_the_amount_with_the_late_fee(db, ctx, notice):
    _, _, code = notice  # decision 10-17, due 11-01, paid 11-27: 26 days, 3% a day -> 78%
    started = start(db, ctx, code)
    with transaction(db.sessions) as s:
        attempt = s.scalars(select(PaymentAttempt)).one()
        assert (attempt.principal, attempt.late_fee, attempt.amount) == (20000, 15600, 35600)
        assert attempt.state == "redirected" and attempt.gateway == "alipay"
        assert started.redirect.url.endswith(started.order_id)
        assert "channel wallet" in attempt.routing_reason


def test_capture_posts_once_and_marks_paid(db, ctx, gateways, notice):
    _, notice_id, code = notice
    started = start(db, ctx, code)
    result = gateways["alipay"].pay(started.order_id, PAID_AT)
    first = apply(db, result)
    again = apply(db, result)
    assert first.outcome == "captured" and again.outcome == "already_captured"
    assert entry_count(db) == 1
    assert balances(db)["gateway_clearing:alipay"] == 35600
    assert balances(db)["treasury_payable:510100-city"] == 35600
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
        receipt = s.scalars(select(Receipt)).one()  # one receipt, signed, for the paid notice
        assert receipt.notice_id == notice_id
        assert verify_receipt(receipt, {ESEAL.key_id: ESEAL.public_key}).ok


def test_fifty_concurrent_identical_notifies_capture_once(pg, ctx, gateways, tmp_path):
    with transaction(pg.sessions) as s:
        _, n = notice_setup(s, tmp_path, decision_date=date(2026, 11, 20))
        code = n.payment_code
    started = start(pg, ctx, code)
    result = gateways["alipay"].pay(started.order_id, PAID_AT)
    barrier = Barrier(50)

    def notify(_):
        barrier.wait()
        return apply(pg, result).outcome

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(notify, range(50)))
    assert outcomes.count("captured") == 1
    assert outcomes.count("already_captured") == 49
    assert entry_count(pg) == 1
    assert balances(pg)["gateway_clearing:alipay"] == 20000


def test_two_gateways_paid_for_one_notice_the_second_is_a_duplicate(db, ctx, gateways, notice):
    _, notice_id, code = notice
    first = start(db, ctx, code, "wallet")
    second = start(db, ctx, code, "bank")
    apply(db, gateways["alipay"].pay(first.order_id, PAID_AT))
    outcome = apply(db, gateways["unionpay"].pay(second.order_id, PAID_AT))
    assert outcome.outcome == "duplicate" and outcome.refund_id
    b = balances(db)
    assert b["refunds_payable"] == 35600 and b["gateway_clearing:unionpay"] == 35600
    # the automatic refund goes to the gateway, then the ledger
    state = refunds.process_refund(db.sessions, gateways.__getitem__, outcome.refund_id)
    assert state == "succeeded"
    b = balances(db)
    assert b["refunds_payable"] == 0 and b["gateway_clearing:unionpay"] == 0
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"


def test_the_database_refuses_a_second_settling_attempt(db, ctx, gateways, notice):
    _, _, code = notice
    a, b = start(db, ctx, code), start(db, ctx, code)
    apply(db, gateways["alipay"].pay(a.order_id, PAID_AT))
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(
            text("UPDATE payment_attempts SET settles_notice_id = notice_id WHERE order_id = :o"),
            {"o": b.order_id},
        )


def test_late_notify_after_expiry_still_captures_at_the_fixed_amount(db, ctx, gateways, notice):
    _, _, code = notice
    started = start(db, ctx, code)
    next_day = PAID_AT + timedelta(days=1)
    with transaction(db.sessions) as s:
        from clearing.payments.service import expire_if_due

        assert expire_if_due(
            s, started.order_id, gateways["alipay"].query(started.order_id), next_day
        )
    outcome = apply(db, gateways["alipay"].pay(started.order_id, PAID_AT + timedelta(hours=14)))
    assert outcome.outcome == "captured"
    assert balances(db)["gateway_clearing:alipay"] == 35600


def test_amount_mismatch_changes_nothing(db, ctx, gateways, notice):
    _, notice_id, code = notice
    started = start(db, ctx, code)
    forged = PaymentResult("alipay", started.order_id, GatewayStatus.SUCCEEDED, 1, "T", PAID_AT)
    assert apply(db, forged).outcome == "amount_mismatch"
    assert entry_count(db) == 0
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "unpaid"


def test_unknown_order_and_wrong_gateway_are_not_acknowledged(db, ctx, gateways, notice):
    _, _, code = notice
    started = start(db, ctx, code)
    other = PaymentResult("wechatpay", started.order_id, GatewayStatus.SUCCEEDED, 35600)
    assert not apply(db, other).acknowledged
    assert not apply(db, PaymentResult("alipay", "nope", GatewayStatus.SUCCEEDED, 1)).acknowledged


def test_decline_then_pay_anyway_is_still_captured(db, ctx, gateways, notice):
    _, _, code = notice
    started = start(db, ctx, code)
    apply(db, PaymentResult("alipay", started.order_id, GatewayStatus.FAILED))
    assert apply(db, gateways["alipay"].pay(started.order_id, PAID_AT)).outcome == "captured"


def test_failover_to_the_next_wallet_before_redirect(db, ctx, gateways, notice):
    _, _, code = notice
    gateways["alipay"].down = True
    started = start(db, ctx, code)
    assert started.gateway == "wechatpay"
    with transaction(db.sessions) as s:
        states = dict(s.execute(select(PaymentAttempt.gateway, PaymentAttempt.state)).all())
    assert states == {"alipay": "failed", "wechatpay": "redirected"}


def test_a_paid_notice_cannot_start_another_attempt(db, ctx, gateways, notice):
    _, _, code = notice
    started = start(db, ctx, code)
    apply(db, gateways["alipay"].pay(started.order_id, PAID_AT))
    with pytest.raises(NoticeNotPayable):
        start(db, ctx, code)


# refunds -----------------------------------------------------------------------------------


def paid_notice(db, ctx, gateways, notice):
    who, notice_id, code = notice
    started = start(db, ctx, code)
    apply(db, gateways["alipay"].pay(started.order_id, PAID_AT))
    return who, notice_id


def request(db, who, notice_id, amount, expected=None):
    return run_in_transaction(
        db.sessions,
        lambda s: (
            refunds.request_refund(
                s,
                department_id=who.department_id,
                notice_id=notice_id,
                amount=amount,
                reason="test",
                expected_available=expected,
            ).id
        ),
    )


def test_partial_then_full_refund(db, ctx, gateways, notice):
    who, notice_id = paid_notice(db, ctx, gateways, notice)
    r1 = request(db, who, notice_id, 10000, expected=35600)
    assert refunds.process_refund(db.sessions, gateways.__getitem__, r1) == "succeeded"
    assert refunds.process_refund(db.sessions, gateways.__getitem__, r1) == "not_submitted"
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
    with pytest.raises(refunds.StaleRefundAmount):
        request(db, who, notice_id, 25600, expected=35600)
    r2 = request(db, who, notice_id, 25600, expected=25600)
    refunds.process_refund(db.sessions, gateways.__getitem__, r2)
    assert balances(db)["gateway_clearing:alipay"] == 0
    assert balances(db)["treasury_payable:510100-city"] == 0
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "refunded"
    assert len(gateways["alipay"].refunds) == 2


def test_refund_cannot_exceed_what_was_paid(db, ctx, gateways, notice):
    who, notice_id = paid_notice(db, ctx, gateways, notice)
    with pytest.raises(Exception, match="amount must be between"):
        request(db, who, notice_id, 35601)


def test_failed_refund_frees_the_amount_and_posts_nothing(db, ctx, gateways, notice):
    who, notice_id = paid_notice(db, ctx, gateways, notice)
    gateways["alipay"].refuse_refunds = True
    r = request(db, who, notice_id, 35600)
    assert refunds.process_refund(db.sessions, gateways.__getitem__, r) == "failed"
    assert entry_count(db) == 1
    gateways["alipay"].refuse_refunds = False
    request(db, who, notice_id, 35600)  # available again


def test_concurrent_refunds_never_exceed_the_payment(pg, ctx, gateways, tmp_path):
    with transaction(pg.sessions) as s:
        who, n = notice_setup(s, tmp_path, decision_date=date(2026, 11, 20))
        notice_id, code = n.id, n.payment_code
    started = start(pg, ctx, code)
    apply(pg, gateways["alipay"].pay(started.order_id, PAID_AT))
    barrier = Barrier(10)

    def one(_):
        barrier.wait()
        try:
            return request(pg, who, notice_id, 3000)
        except Exception:
            return None

    with ThreadPoolExecutor(10) as pool:
        made = [r for r in pool.map(one, range(10)) if r]
    assert len(made) == 6  # 6 x 30.00 <= 200.00 < 7 x 30.00
    with transaction(pg.sessions) as s:
        held = s.scalar(select(func.sum(Refund.amount)).where(Refund.notice_id == notice_id))
    assert held == 18000


# the query job: lost notifies and expiry ---------------------------------------------------


def test_lost_notify_is_recovered_by_the_query_job(db, ctx, gateways, notice, monkeypatch):
    from clearing.payments.tasks import query_open_attempts

    monkeypatch.delenv("FEISHUI_REDIS_URL", raising=False)
    _, notice_id, code = notice
    started = start(db, ctx, code)
    gateways["alipay"].pay(started.order_id, PAID_AT)  # paid, but the notify never comes
    too_soon = query_open_attempts(db.sessions, ctx, now=PAID_AT + timedelta(seconds=30))
    assert too_soon.asked == 0
    report = query_open_attempts(db.sessions, ctx, now=PAID_AT + timedelta(minutes=5))
    assert report.outcomes == {"captured": 1}
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "paid"
    assert query_open_attempts(db.sessions, ctx, now=PAID_AT + timedelta(minutes=9)).asked == 0


def test_unpaid_attempts_expire_after_their_business_day(db, ctx, gateways, notice):
    from clearing.payments.tasks import query_open_attempts

    _, _, code = notice
    started = start(db, ctx, code)
    query_open_attempts(db.sessions, ctx, now=PAID_AT + timedelta(days=1))
    with transaction(db.sessions) as s:
        attempt = s.scalars(select(PaymentAttempt)).one()
        assert attempt.state == "expired" and attempt.order_id == started.order_id


def test_duplicate_found_by_query_is_refunded_after_commit(db, ctx, gateways, notice, monkeypatch):
    from clearing.payments.tasks import query_attempt

    monkeypatch.delenv("FEISHUI_REDIS_URL", raising=False)
    _, _, code = notice
    a, b = start(db, ctx, code), start(db, ctx, code, "bank")
    apply(db, gateways["alipay"].pay(a.order_id, PAID_AT))
    gateways["unionpay"].pay(b.order_id, PAID_AT)
    assert query_attempt(db.sessions, ctx, b.order_id, "unionpay").outcome == "duplicate"
    assert len(gateways["unionpay"].refunds) == 1  # refunded in-process, after the commit
    assert balances(db)["refunds_payable"] == 0
