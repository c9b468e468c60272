"""The recurring jobs, run by ``feishui scheduler`` (RQ's CronScheduler, or in-process).

RQ's cron strings are read in the scheduler process's local time; ``feishui scheduler`` sets
``TZ=Asia/Shanghai`` so that every time below is a business (Beijing) time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from clearing.ledger.tasks import seal_ledger

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
    """Every recurring job; features that land add theirs here."""
    jobs = [Recurring(f"{seal_ledger.__module__}.seal_ledger", "ledger", "* * * * *",
                      "seal new journal entries into the hash chain, every minute")]
    try:
        from notices import tasks as notice_tasks
    except ImportError:  # pragma: no cover - until the notices feature lands
        return jobs
    if hasattr(notice_tasks, "expire_notices"):
        jobs.append(Recurring("notices.tasks.expire_notices", "notices", "5 0 * * *",
                              "expire unpaid notices past their expiry date, 00:05 daily"))
    return jobs
