"""Background jobs: RQ when ``FEISHUI_REDIS_URL`` is set, otherwise run in-process at once.

Jobs take ids and dates only, never ORM objects, and every job body is idempotent, so a retry or
a second delivery changes nothing. Enqueue only after the transaction that made the work visible
has committed.

On RQ, each job runs through :func:`run_with_context`, which carries the enqueuing request's id
into the job's logs (and its ``meta``), stamps the job id, and counts failures by queue.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from clearing import logs, metrics
from clearing.config import get_settings

log = logging.getLogger(__name__)

#: Queues by purpose; a worker may listen to several (``feishui worker --queues ...``).
QUEUES = ("ledger", "notices", "reconciliation", "webhooks", "default")
RETRY_INTERVALS = [10, 60, 300]  # seconds between the 3 retries


@lru_cache(maxsize=4)
def redis_connection(url: str):  # type: ignore[no-untyped-def]
    from redis import Redis

    return Redis.from_url(url)


def enqueue(func: Callable[..., Any], *args: Any, queue: str = "default") -> str | None:
    """Run ``func(*args)`` in the background; returns the RQ job id, or None if run inline."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    url = get_settings().redis_url
    if not url:
        func(*args)
        return None
    from rq import Queue, Retry

    request_id = logs.current_request_id()
    job = Queue(queue, connection=redis_connection(url)).enqueue(
        run_with_context,
        func_path(func),
        request_id,
        *args,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        meta={"request_id": request_id},
    )
    log.info("enqueued %s on %s as %s", func.__name__, queue, job.id)
    return job.id


def func_path(func: Callable[..., Any]) -> str:
    """``module.name`` of an importable function."""
    return f"{func.__module__}.{func.__qualname__}"


def run_with_context(path: str, request_id: str | None, *args: Any) -> Any:
    """Run the function at ``path`` with the enqueuing request's id and this job's id set for
    logging; count a failure against the job's queue, then let RQ retry it."""
    from rq import get_current_job

    job = get_current_job()
    module, _, name = path.rpartition(".")
    func = getattr(importlib.import_module(module), name)
    with logs.bound(request_id, job.id if job else None):
        try:
            return func(*args)
        except Exception:
            metrics.job_failures.labels(queue=job.origin if job else "inline").inc()
            raise
