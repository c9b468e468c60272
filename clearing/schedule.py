"""The recurring jobs, run by ``feishui scheduler`` (RQ's CronScheduler, or in-process).

RQ's cron strings are read in the scheduler process's local time; ``feishui scheduler`` sets
``TZ=Asia/Shanghai`` so that every time below is a business (Beijing) time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

SHANGHAI_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Recurring:
    func_path: str
    queue: str
    cron: str
    """Cron string in Asia/Shanghai time."""
    what: str

    def resolve(self):  # type: ignore[no-untyped-def]
        """The job's function."""
        module, _, name = self.func_path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def recurring_jobs() -> list[Recurring]:
    """Every recurring job, with its queue and its time (Asia/Shanghai)."""
    return [
        Recurring(
            "clearing.ledger.tasks.seal_ledger",
            "ledger",
            "* * * * *",
            "seal new journal entries into the hash chain, every minute",
        ),
        Recurring(
            "clearing.payments.tasks.query_open_attempts_job",
            "default",
            "*/2 * * * *",
            "query attempts still open at their gateway (lost notifies), every 2 min",
        ),
        Recurring(
            "clearing.payments.tasks.process_submitted_refunds_job",
            "default",
            "*/5 * * * *",
            "process refunds still submitted after 5 min (enqueue failed, job lost, "
            "gateway pending), every 5 min",
        ),
        Recurring(
            "notices.events.deliver_due_events_job",
            "webhooks",
            "* * * * *",
            "deliver due department webhook events (retry schedule in the database), every minute",
        ),
        Recurring(
            "notices.tasks.expire_notices",
            "notices",
            "5 0 * * *",
            "expire unpaid notices past their expiry date, 00:05 daily",
        ),
        Recurring(
            "notices.tasks.purge_idempotency_keys",
            "notices",
            "20 0 * * *",
            "delete Idempotency-Key records past their 24 hours, 00:20 daily",
        ),
        Recurring(
            "reconciliation.tasks.reconcile_night",
            "reconciliation",
            "30 2 * * *",
            "reconcile yesterday's gateway bills, then the fiscal account statement, 02:30 daily",
        ),
    ]
