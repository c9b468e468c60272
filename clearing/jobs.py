"""Background jobs: RQ when ``FEISHUI_REDIS_URL`` is set, otherwise run in-process at once.

Jobs take ids and dates only, never ORM objects, and every job body is idempotent, so a retry or
a second delivery changes nothing. Enqueue only after the transaction that made the work visible
has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

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

    job = Queue(queue, connection=redis_connection(url)).enqueue(
        func, *args, retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS))
    log.info("enqueued %s on %s as %s", func.__name__, queue, job.id)
    return job.id
