"""The request id travels from the enqueuing request into the RQ job's logs (real Redis), the
job's own id is stamped, and a failing job is counted against its queue."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rq import Queue, SimpleWorker

from clearing import jobs, logs, metrics
from clearing.config import get_settings
from tests.conftest import REDIS_URL, unavailable

log = logging.getLogger("tests.job_context")


def logging_job(notice_id: int) -> None:
    log.info("processing notice %s", notice_id)


def tick() -> None:
    log.info("tick")


def failing_job(notice_id: int) -> None:
    raise RuntimeError(f"cannot process {notice_id}")


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


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logs.make_handler(stream)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    log.removeHandler(handler)


def drain(url: str, queue: str) -> None:
    q = Queue(queue, connection=jobs.redis_connection(url))
    SimpleWorker([q], connection=q.connection).work(burst=True)


def test_the_request_id_reaches_the_job(redis_url, captured):
    with logs.bound(request_id="req-abc"):
        job_id = jobs.enqueue(logging_job, 7, queue="notices")
    job = Queue("notices", connection=jobs.redis_connection(redis_url)).fetch_job(job_id)
    assert job.meta["request_id"] == "req-abc"
    assert logs.current_request_id() is None
    drain(redis_url, "notices")
    (line,) = [x for x in captured() if x["message"] == "processing notice 7"]
    assert (line["request_id"], line["job_id"]) == ("req-abc", job_id)


def test_a_job_without_a_request_has_only_its_job_id(redis_url, captured):
    job_id = jobs.enqueue(logging_job, 8, queue="notices")
    drain(redis_url, "notices")
    (line,) = [x for x in captured() if x["message"] == "processing notice 8"]
    assert (line["request_id"], line["job_id"]) == (None, job_id)


def test_a_failing_job_is_counted_by_queue(redis_url):
    counter = metrics.job_failures.labels(queue="reconciliation")
    before = counter._value.get()
    jobs.enqueue(failing_job, 9, queue="reconciliation")
    drain(redis_url, "reconciliation")
    assert counter._value.get() == before + 1


def test_run_with_context_inline_resolves_the_function():
    assert jobs.func_path(logging_job) == "tests.integration.test_job_context.logging_job"
    with pytest.raises(RuntimeError):
        jobs.run_with_context(jobs.func_path(failing_job), "req-x", 1)


def test_scheduled_jobs_run_through_the_context_wrapper(redis_url, captured):
    from rq.cron import CronScheduler

    connection = jobs.redis_connection(redis_url)
    path = jobs.func_path(tick)
    cron_job = CronScheduler(connection=connection).register(
        jobs.run_with_context, queue_name="ledger", cron="* * * * *", args=(path, None), name=path
    )
    job = cron_job.enqueue(connection)
    drain(redis_url, "ledger")
    (line,) = [x for x in captured() if x["message"] == "tick"]
    assert (line["request_id"], line["job_id"]) == (None, job.id)
