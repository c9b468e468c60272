"""``feishui worker`` and ``feishui scheduler``: the background processes."""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from clearing.config import get_settings
from clearing.errors import ConfigurationError
from clearing.jobs import QUEUES, redis_connection, run_with_context
from clearing.logs import configure_logging
from clearing.schedule import SHANGHAI_TZ, recurring_jobs


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run an RQ worker (needs FEISHUI_REDIS_URL)")
    w.add_argument(
        "--queues",
        default=",".join(QUEUES),
        help="comma-separated queues, in priority order (default: all)",
    )
    w.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    w.add_argument(
        "--simple",
        action="store_true",
        help="run jobs in the worker process (no fork): faster, less isolated",
    )
    w.set_defaults(func=_worker)
    s = sub.add_parser("scheduler", help="run the recurring jobs (RQ cron, or in-process)")
    s.add_argument("--list", action="store_true", help="print the schedule and exit")
    s.set_defaults(func=_scheduler)


def _worker(args: argparse.Namespace) -> int:
    from rq import SimpleWorker, Worker

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    url = settings.redis_url
    if not url:
        raise ConfigurationError(
            "feishui worker needs FEISHUI_REDIS_URL; without it jobs run "
            "in-process and no worker is needed"
        )
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise ConfigurationError(f"unknown queue(s): {', '.join(unknown)}")
    cls = SimpleWorker if args.simple else Worker
    worker = cls(queues, connection=redis_connection(url))
    worker.work(burst=args.burst, with_scheduler=True)  # the scheduler runs retries' backoff
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    # RQ reads cron strings in local time: make local time Beijing time.
    os.environ["TZ"] = SHANGHAI_TZ
    time.tzset()
    jobs = recurring_jobs()
    if args.list:
        for job in jobs:
            print(f"{job.cron:<12} {job.queue:<15} {job.func_path}  # {job.what}")
        return 0
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    url = settings.redis_url
    if url:
        from rq.cron import CronScheduler

        scheduler = CronScheduler(connection=redis_connection(url))
        for job in jobs:
            job.resolve()  # fail now, not at 02:30, if a job's path is wrong
            scheduler.register(
                run_with_context,
                queue_name=job.queue,
                cron=job.cron,
                args=(job.func_path, None),
                name=job.func_path,
            )
        scheduler.start()
        return 0
    return _run_inline(jobs)


def _run_inline(jobs) -> int:  # type: ignore[no-untyped-def]
    """Without Redis: run each job in this process at its next cron time, forever."""
    from croniter import croniter

    tz = ZoneInfo(SHANGHAI_TZ)
    iters = {job: croniter(job.cron, datetime.now(tz)) for job in jobs}
    due = {job: it.get_next(datetime) for job, it in iters.items()}
    while True:
        job = min(due, key=due.__getitem__)
        time.sleep(max(0.0, (due[job] - datetime.now(tz)).total_seconds()))
        print(f"{datetime.now(tz).isoformat()} running {job.func_path}", flush=True)
        job.resolve()()
        due[job] = iters[job].get_next(datetime)
