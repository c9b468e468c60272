"""Payment attempts: start one (routing, fixed amount, redirect), and settle what gateways say.

Gateway calls are made outside database locks: :func:`start_attempt` holds no lock (it inserts a
new attempt), and the query path asks the gateway first, then applies the answer through
:func:`clearing.payments.capture.capture`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.errors import Conflict, NotFound
from clearing.payments.ids import new_order_id
from clearing.payments.models import PaymentAttempt
from clearing.payments.states import OPEN, AttemptState, ensure_transition
from clearing.routing import Router
from gateways.protocol import (
    GatewayStatus,
    GatewayUnavailable,
    PaymentGateway,
    PaymentRequest,
    PaymentResult,
    Redirect,
)
from notices.fees import SHANGHAI, amount_due, business_date, rule_from_dict
from notices.models import Notice
from notices.receipts import ESeal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentContext:
    """What payments need from the outside world, chosen by configuration."""

    gateways: Mapping[str, PaymentGateway]
    router: Router
    public_base_url: str
    eseal: ESeal | None = None
    """Signs receipts; None means the process settings' key."""


@dataclass(frozen=True)
class Started:
    order_id: str
    gateway: str
    redirect: Redirect


class NoticeNotPayable(Conflict):
    type = "notice-not-payable"


def payable_notice(session: Session, payment_code: str, today) -> Notice:  # type: ignore[no-untyped-def]
    """The notice for a code, if it can be paid today; otherwise a clear error."""
    notice = session.scalars(
        select(Notice).where(Notice.payment_code == payment_code)
    ).one_or_none()
    if notice is None:
        raise NotFound("no notice has this payment code")
    if notice.status != "unpaid":
        raise NoticeNotPayable(f"this notice is {notice.status}")
    if notice.expires_on < today:
        raise NoticeNotPayable("this notice has expired")
    return notice


def start_attempt(
    session: Session,
    ctx: PaymentContext,
    payment_code: str,
    channel: str,
    now: datetime | None = None,
) -> Started:
    """Create an attempt at the amount due today and get the gateway's redirect.

    A gateway that fails before the redirect is reported to the router and the next gateway of
    the channel is tried, with a new attempt; after the redirect, the attempt never moves."""
    now = now or datetime.now(UTC)
    today = business_date(now)
    notice = payable_notice(session, payment_code, today)
    due = amount_due(notice.principal, notice.due_date, today, rule_from_dict(notice.late_fee_rule))
    for route in ctx.router.routes(channel, due.total):
        attempt = _new_attempt(session, notice, route.gateway, channel, route.reason, due, now)
        try:
            redirect = ctx.gateways[route.gateway].start(_request(ctx, notice, attempt))
        except GatewayUnavailable as exc:
            log.warning(
                "gateway %s failed to start %s: %s", route.gateway, attempt.order_id, exc.detail
            )
            ctx.router.failure(route.gateway)
            _set_state(attempt, AttemptState.FAILED, now)
            continue
        ctx.router.success(route.gateway)
        _set_state(attempt, AttemptState.REDIRECTED, now)
        return Started(attempt.order_id, route.gateway, redirect)
    raise AssertionError("unreachable: routes() raises NoRoute when exhausted")


def _new_attempt(
    session: Session, notice: Notice, gateway: str, channel: str, reason: str, due, now: datetime
) -> PaymentAttempt:  # type: ignore[no-untyped-def]
    day = business_date(now)
    attempt = PaymentAttempt(
        order_id=new_order_id(now),
        notice_id=notice.id,
        gateway=gateway,
        channel=channel,
        routing_reason=reason[:300],
        state=AttemptState.CREATED.value,
        amount=due.total,
        principal=due.principal,
        late_fee=due.late_fee,
        business_date=day,
        expires_at=datetime.combine(day + timedelta(days=1), time(0), SHANGHAI),
        created_at=now,
        updated_at=now,
    )
    session.add(attempt)
    session.flush()
    return attempt


def _request(ctx: PaymentContext, notice: Notice, attempt: PaymentAttempt) -> PaymentRequest:
    base = ctx.public_base_url.rstrip("/")
    subject = notice.items[0].name_zh if notice.items else notice.kind
    return PaymentRequest(
        order_id=attempt.order_id,
        amount_fen=attempt.amount,
        subject=subject[:100],
        notify_url=f"{base}/v1/gateways/{attempt.gateway}/notify",
        return_url=f"{base}/pay/return/{attempt.order_id}",
        expires_at=attempt.expires_at,
    )


def _set_state(attempt: PaymentAttempt, state: AttemptState, now: datetime) -> None:
    ensure_transition(attempt.state, state)
    attempt.state, attempt.updated_at = state.value, now


def get_attempt(session: Session, order_id: str) -> PaymentAttempt:
    attempt = session.scalars(
        select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)
    ).one_or_none()
    if attempt is None:
        raise NotFound("no payment attempt has this id")
    return attempt


def open_attempts(
    session: Session, *, older_than: datetime, limit: int = 500
) -> list[tuple[str, str]]:
    """(order id, gateway) of attempts still waiting for the gateway's word, oldest first."""
    rows = session.execute(
        select(PaymentAttempt.order_id, PaymentAttempt.gateway)
        .where(
            PaymentAttempt.state.in_([s.value for s in OPEN]),
            PaymentAttempt.updated_at <= older_than,
        )
        .order_by(PaymentAttempt.updated_at)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


def expire_if_due(session: Session, order_id: str, answer: PaymentResult, now: datetime) -> bool:
    """After a query: an open attempt past its expiry that the gateway did not collect expires.
    (If the gateway reports it paid later, capture still happens: expired -> succeeded.)"""
    attempt = session.scalars(
        select(PaymentAttempt).where(PaymentAttempt.order_id == order_id).with_for_update()
    ).one()
    expires_at = (
        attempt.expires_at if attempt.expires_at.tzinfo else attempt.expires_at.replace(tzinfo=UTC)
    )
    if attempt.state not in OPEN or answer.status is GatewayStatus.SUCCEEDED or now < expires_at:
        return False
    _set_state(attempt, AttemptState.EXPIRED, now)
    return True
