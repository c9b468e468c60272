"""Reconciliation jobs (RQ or in-process): ids and dates only.

Retries are safe: a run is keyed by (source, day, file SHA-256), so a retried job that fetches
the same file returns the existing run, and a job killed mid-run posted nothing (one transaction)
and is simply run again (``clearing.jobs.enqueue`` configures RQ's ``Retry``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from clearing.payments.service import PaymentContext
from gateways.options import SHANGHAI
from reconciliation import filestore
from reconciliation.bank_statement import statement_for_day
from reconciliation.service import DEFAULT_ACCOUNT, RunFailed, reconcile_bill, reconcile_statement

log = logging.getLogger(__name__)
STARTED_BY = "scheduler"


def _wiring():  # type: ignore[no-untyped-def]
    from clearing.payments.wiring import get_payment_context
    from clearing.runtime import get_runtime

    return get_runtime(), get_payment_context()


def yesterday() -> date:
    """Yesterday in Asia/Shanghai."""
    return datetime.now(SHANGHAI).date() - timedelta(days=1)


def run_day(
    runtime,
    ctx: PaymentContext,
    gateway: str,
    day: date,  # type: ignore[no-untyped-def]
    started_by: str = STARTED_BY,
) -> int:
    bill = ctx.gateways[gateway].fetch_bill(day)
    filestore.store(runtime.settings, bill.content)
    return reconcile_bill(
        runtime.sessions,
        ctx,
        data=bill.content,
        filename=bill.filename,
        started_by=started_by,
        source=gateway,
        business_date=day,
    )


def run_statement_day(
    runtime,
    ctx: PaymentContext,
    day: date,  # type: ignore[no-untyped-def]
    started_by: str = STARTED_BY,
    account: str = DEFAULT_ACCOUNT,
) -> int:
    name, data = statement_for_day(ctx.gateways, day, account.partition(":")[2])
    filestore.store(runtime.settings, data)
    return reconcile_statement(
        runtime.sessions, data=data, filename=name, started_by=started_by, account=account
    )


def run_night(
    runtime,
    ctx: PaymentContext,
    day: date,  # type: ignore[no-untyped-def]
    started_by: str = STARTED_BY,
) -> dict[str, int | str]:
    """Every enabled gateway's bill, then the bank statement. A failed bill does not stop the
    others; its run records the error."""
    out: dict[str, int | str] = {}
    for gateway in sorted(ctx.gateways):
        try:
            out[gateway] = run_day(runtime, ctx, gateway, day, started_by)
        except RunFailed as exc:
            log.error("reconciliation of %s %s failed: %s", gateway, day, exc.detail)
            out[gateway] = f"failed: run {exc.run_id}"
    out["statement"] = run_statement_day(runtime, ctx, day, started_by)
    return out


# job entry points ----------------------------------------------------------------------------


def reconcile_day(gateway: str, business_date_iso: str) -> int:
    """Fetch ``gateway``'s bill for the day, store it, reconcile it; returns the run id."""
    runtime, ctx = _wiring()
    return run_day(runtime, ctx, gateway, date.fromisoformat(business_date_iso))


def reconcile_statement_day(date_iso: str) -> int:
    """Reconcile the fiscal account's statement for the day (dev: generated from the bills)."""
    runtime, ctx = _wiring()
    return run_statement_day(runtime, ctx, date.fromisoformat(date_iso))


def reconcile_night(date_iso: str | None = None) -> dict[str, int | str]:
    """The nightly job (02:30 Asia/Shanghai): yesterday's bills, then the statement."""
    runtime, ctx = _wiring()
    day = date.fromisoformat(date_iso) if date_iso else yesterday()
    return run_night(runtime, ctx, day)
