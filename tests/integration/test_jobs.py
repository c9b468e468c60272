"""Jobs on real Redis/RQ and in-process; the schedule in Beijing time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rq import Queue, SimpleWorker

from clearing import jobs
from clearing.config import get_settings
from clearing.schedule import recurring_jobs
from tests.conftest import REDIS_URL, unavailable

CALLS: list[tuple] = []


def record(*args) -> None:
    CALLS.append(args)


@pytest.fixture
def redis_url(monkeypatch):
    from redis import Redis

    try:
        Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        unavailable("Redis", exc)
    Redis.from_url(REDIS_URL).flushdb()
    monkeypatch.setenv("FEISHUI_REDIS_URL", REDIS_URL)
    get_settings.cache_clear()
    yield REDIS_URL
    get_settings.cache_clear()


def test_without_redis_jobs_run_inline(monkeypatch):
    monkeypatch.delenv("FEISHUI_REDIS_URL", raising=False)
    get_settings.cache_clear()
    CALLS.clear()
    assert jobs.enqueue(record, 1, "2026-11-28", queue="ledger") is None
    assert CALLS == [(1, "2026-11-28")]
    get_settings.cache_clear()


def test_with_redis_jobs_go_to_rq_and_a_worker_runs_them(redis_url):
    CALLS.clear()
    job_id = jobs.enqueue(record, 7, queue="ledger")
    assert job_id and CALLS == []
    queue = Queue("ledger", connection=jobs.redis_connection(redis_url))
    assert queue.count == 1
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert CALLS == [(7,)]


def test_unknown_queue_refused():
    with pytest.raises(ValueError, match="unknown queue"):
        jobs.enqueue(record, queue="nope")


def test_schedule_registers_with_rq_cron_in_beijing_time(redis_url, monkeypatch):
    import time

    from rq.cron import CronScheduler

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        scheduler = CronScheduler(connection=jobs.redis_connection(redis_url))
        for job in recurring_jobs():
            cron_job = scheduler.register(job.resolve(), queue_name=job.queue, cron="30 2 * * *")
        cron_job.latest_enqueue_time = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
        # 02:30 in Beijing is 18:30 UTC the day before.
        assert cron_job.get_next_enqueue_time() == datetime(2026, 11, 28, 18, 30, tzinfo=UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
