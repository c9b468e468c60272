"""Background jobs of the notices feature. Each takes ids or dates only, opens its own
transaction through the process runtime and is idempotent; the scheduler
(:mod:`clearing.schedule`) runs them."""

from __future__ import annotations

from datetime import date

from clearing import runtime
from clearing.db import run_in_transaction
from notices import idempotency, service


def expire_notices(as_of: date | None = None) -> int:
    """Mark unpaid notices past their ``expires_on`` as expired; return how many changed.

    ``as_of`` is an Asia/Shanghai business date (default: today). Running it twice for the same
    day changes nothing the second time.
    """
    day = as_of or service.today_in_shanghai()
    sessions = runtime.get_runtime().sessions
    return run_in_transaction(sessions, lambda s: service.expire_notices(s, day))


def purge_idempotency_keys() -> int:
    """Delete Idempotency-Key records older than their 24-hour retention."""
    return run_in_transaction(runtime.get_runtime().sessions, idempotency.purge_expired)
