"""Payment jobs: ids and dates only, idempotent, gateway calls outside database transactions.

- :func:`query_open_attempts_job` (every 2 minutes): asks the gateway about attempts still open,
  so a lost notify still ends in a capture, and expires attempts past their business day.
- :func:`process_refund_job`: sends one submitted refund to its gateway and records the answer.
- :func:`process_submitted_refunds_job` (every 5 minutes): processes every refund still
  ``submitted`` after a few minutes (its enqueue failed, Redis was down, its job was lost, or the
  gateway answered "pending"), so a refund never waits on a single enqueue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clearing import metrics
from clearing.config import get_settings
from clearing.db import run_in_transaction
from clearing.jobs import enqueue
from clearing.payments import refunds
from clearing.payments.capture import CaptureOutcome, capture
from clearing.payments.models import Refund
from clearing.payments.service import PaymentContext, expire_if_due, get_attempt, open_attempts
from gateways.protocol import GatewayUnavailable

log = logging.getLogger(__name__)

#: How long a refund may stay ``submitted`` before the sweep processes it itself.
SUBMITTED_REFUND_MIN_AGE = timedelta(minutes=5)


@dataclass
class QueryReport:
    asked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    unavailable: int = 0


def query_attempt(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    order_id: str,
    gateway: str,
    now: datetime | None = None,
) -> CaptureOutcome | None:
    """Ask the gateway about one attempt and apply the answer (None if it did not answer)."""
    now = now or datetime.now(UTC)
    try:
        answer = ctx.gateways[gateway].query(order_id)
    except GatewayUnavailable as exc:
        log.warning("query of %s at %s failed: %s", order_id, gateway, exc.detail)
        ctx.router.failure(gateway)
        return None
    ctx.router.success(gateway)
    outcome = capture(sessions, answer, source="query", now=now, eseal=ctx.eseal)
    after_commit(outcome, sessions, ctx)
    metrics.captures.labels(gateway=gateway, outcome=outcome.outcome).inc()
    run_in_transaction(sessions, lambda s: expire_if_due(s, order_id, answer, now))
    return outcome


def query_open_attempts(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    *,
    now: datetime | None = None,
    min_age: timedelta = timedelta(minutes=2),
) -> QueryReport:
    """Query every attempt that has waited at least ``min_age`` for the gateway's word."""
    now = now or datetime.now(UTC)
    report = QueryReport()
    todo = run_in_transaction(sessions, lambda s: open_attempts(s, older_than=now - min_age))
    for order_id, gateway in todo:
        report.asked += 1
        outcome = query_attempt(sessions, ctx, order_id, gateway, now)
        if outcome is None:
            report.unavailable += 1
            continue
        report.outcomes[outcome.outcome] = report.outcomes.get(outcome.outcome, 0) + 1
    return report


def refresh_attempt(
    sessions: sessionmaker[Session], ctx: PaymentContext, order_id: str
) -> CaptureOutcome | None:
    """The return page's check: ask the gateway now unless the attempt is already settled."""
    state, gateway = run_in_transaction(sessions, lambda s: _state_and_gateway(s, order_id))
    if state in ("succeeded", "duplicate"):
        return None
    return query_attempt(sessions, ctx, order_id, gateway)


def _state_and_gateway(session: Session, order_id: str) -> tuple[str, str]:
    attempt = get_attempt(session, order_id)
    return attempt.state, attempt.gateway


def after_commit(
    outcome: CaptureOutcome, sessions: sessionmaker[Session], ctx: PaymentContext
) -> None:
    """Work that follows a committed capture: the automatic refund of a duplicate payment."""
    if outcome.refund_id is not None:
        submit_refund(sessions, ctx, outcome.refund_id)


def submit_refund(sessions: sessionmaker[Session], ctx: PaymentContext, refund_pk: int) -> None:
    """Process a committed refund: on an RQ worker when Redis is configured, else right here
    with the caller's own sessions and gateways.

    Redis being down must not fail the caller (a notify whose capture has committed must still
    be acknowledged): the refund stays ``submitted`` and :func:`process_submitted_refunds_job`
    picks it up later."""
    if get_settings().redis_url:
        try:
            enqueue(process_refund_job, refund_pk, queue="default")
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.error(
                "could not enqueue refund %s (left submitted for the sweep): %s", refund_pk, exc
            )
    else:
        refunds.process_refund(sessions, ctx.gateways.__getitem__, refund_pk)


def process_submitted_refunds(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    *,
    now: datetime | None = None,
    min_age: timedelta = SUBMITTED_REFUND_MIN_AGE,
) -> dict[str, int]:
    """Process every refund still ``submitted`` whose last change is at least ``min_age`` old.
    Safe to overlap with its own RQ job: the gateway is idempotent by ``refund_id`` and the
    answer is recorded only on a refund still ``submitted``."""
    now = now or datetime.now(UTC)
    todo = run_in_transaction(
        sessions,
        lambda s: list(
            s.scalars(
                select(Refund.id)
                .where(Refund.state == "submitted", Refund.updated_at <= now - min_age)
                .order_by(Refund.id)
            )
        ),
    )
    states: dict[str, int] = {}
    for refund_pk in todo:
        try:
            state = refunds.process_refund(sessions, ctx.gateways.__getitem__, refund_pk)
        except Exception:
            log.exception("refund %s could not be processed; the next sweep retries", refund_pk)
            state = "error"
        states[state] = states.get(state, 0) + 1
    return states


# job entry points (RQ or in-process) ---------------------------------------------------------


def query_open_attempts_job() -> dict[str, int]:
    from clearing.payments.wiring import get_payment_context
    from clearing.runtime import get_runtime

    report = query_open_attempts(get_runtime().sessions, get_payment_context())
    return {"asked": report.asked, "unavailable": report.unavailable, **report.outcomes}


def process_refund_job(refund_pk: int) -> str:
    from clearing.payments.wiring import get_payment_context
    from clearing.runtime import get_runtime

    ctx = get_payment_context()
    return refunds.process_refund(get_runtime().sessions, ctx.gateways.__getitem__, refund_pk)


def process_submitted_refunds_job() -> dict[str, int]:
    from clearing.payments.wiring import get_payment_context
    from clearing.runtime import get_runtime

    return process_submitted_refunds(get_runtime().sessions, get_payment_context())
