"""Payment jobs: ids and dates only, idempotent, gateway calls outside database transactions.

- :func:`query_open_attempts_job` (every 2 minutes): asks the gateway about attempts still open,
  so a lost notify still ends in a capture, and expires attempts past their business day.
- :func:`process_refund_job`: sends one submitted refund to its gateway and records the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from clearing.config import get_settings
from clearing.db import run_in_transaction
from clearing.jobs import enqueue
from clearing.payments import refunds
from clearing.payments.capture import CaptureOutcome, apply_result
from clearing.payments.service import PaymentContext, expire_if_due, get_attempt, open_attempts
from gateways.protocol import GatewayUnavailable

log = logging.getLogger(__name__)


@dataclass
class QueryReport:
    asked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    unavailable: int = 0


def query_attempt(sessions: sessionmaker[Session], ctx: PaymentContext, order_id: str,
                  gateway: str, now: datetime | None = None) -> CaptureOutcome | None:
    """Ask the gateway about one attempt and apply the answer (None if it did not answer)."""
    now = now or datetime.now(UTC)
    try:
        answer = ctx.gateways[gateway].query(order_id)
    except GatewayUnavailable as exc:
        log.warning("query of %s at %s failed: %s", order_id, gateway, exc.detail)
        ctx.router.failure(gateway)
        return None
    ctx.router.success(gateway)
    outcome = run_in_transaction(sessions, lambda s: apply_result(
        s, answer, source="query", now=now, eseal=ctx.eseal))
    after_commit(outcome, sessions, ctx)
    run_in_transaction(sessions, lambda s: expire_if_due(s, order_id, answer, now))
    return outcome


def query_open_attempts(sessions: sessionmaker[Session], ctx: PaymentContext, *,
                        now: datetime | None = None,
                        min_age: timedelta = timedelta(minutes=2)) -> QueryReport:
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


def refresh_attempt(sessions: sessionmaker[Session], ctx: PaymentContext,
                    order_id: str) -> CaptureOutcome | None:
    """The return page's check: ask the gateway now unless the attempt is already settled."""
    state, gateway = run_in_transaction(sessions, lambda s: _state_and_gateway(s, order_id))
    if state in ("succeeded", "duplicate"):
        return None
    return query_attempt(sessions, ctx, order_id, gateway)


def _state_and_gateway(session: Session, order_id: str) -> tuple[str, str]:
    attempt = get_attempt(session, order_id)
    return attempt.state, attempt.gateway


def after_commit(outcome: CaptureOutcome, sessions: sessionmaker[Session],
                 ctx: PaymentContext) -> None:
    """Work that follows a committed capture: the automatic refund of a duplicate payment."""
    if outcome.refund_id is not None:
        submit_refund(sessions, ctx, outcome.refund_id)


def submit_refund(sessions: sessionmaker[Session], ctx: PaymentContext, refund_pk: int) -> None:
    """Process a committed refund: on an RQ worker when Redis is configured, else right here
    with the caller's own sessions and gateways."""
    if get_settings().redis_url:
        enqueue(process_refund_job, refund_pk, queue="default")
    else:
        refunds.process_refund(sessions, ctx.gateways.__getitem__, refund_pk)


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
