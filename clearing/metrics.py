"""Prometheus metrics: the objects features increment, and what is collected at scrape time.

Features import this module and increment, e.g.
``metrics.captures.labels(gateway="alipay", outcome="captured").inc()``. Label values must come
from small fixed sets (gateway names, outcomes, queues, notice kinds), never from ids.

Multi-process mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported,
prometheus_client writes every process's values to files in that directory and
:func:`render` aggregates them, so one scrape of any gunicorn worker sees the counters of all
of them (and of RQ work horses on the same host sharing the directory). The directory must be
empty when the processes start (see docs/operations.md).

Gauges are not stored: :class:`ScrapeTimeCollector` computes ``queue_depth`` (and
``queue_failed_jobs``) from Redis and ``circuit_breaker_state`` from a callback at each scrape,
in the scraping process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)
NAMESPACE = "feishui"

http_request_duration = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["method", "route", "status"],
    namespace=NAMESPACE,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
notices_created = Counter(
    "notices_created", "Payment notices created, by kind", ["kind"], namespace=NAMESPACE
)
captures = Counter(
    "captures",
    "Payment capture attempts by gateway and outcome (captured, duplicate, "
    "amount_mismatch, failed)",
    ["gateway", "outcome"],
    namespace=NAMESPACE,
)
capture_paths = Counter(
    "capture_paths",
    "Captures of a payment by the path that wrote them: optimistic (PostgreSQL, decision 0010) "
    "or ordinary, with why the optimistic path was not taken or declined",
    ["path", "reason"],
    namespace=NAMESPACE,
)
notify_verification_failures = Counter(
    "notify_verification_failures",
    "Gateway notifies refused because their signature or certificate did not verify",
    ["gateway"],
    namespace=NAMESPACE,
)
reconciliation_outcomes = Counter(
    "reconciliation_outcomes", "Reconciliation items by outcome", ["outcome"], namespace=NAMESPACE
)
job_failures = Counter(
    "job_failures", "Background jobs that raised, by queue", ["queue"], namespace=NAMESPACE
)

#: Circuit-breaker states as gauge values.
BREAKER_VALUES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
BreakerSource = Callable[[], Mapping[str, str | int]]


def multiprocess_dir() -> str | None:
    """The prometheus_client multi-process directory, if this process runs in that mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ScrapeTimeCollector(Collector):
    """``queue_depth{queue}`` from Redis and ``circuit_breaker_state{gateway}`` from a
    callback, computed when scraped. A failing source is logged and left out, never raised."""

    def __init__(self) -> None:
        self.redis_url: str | None = None
        self.queues: tuple[str, ...] = ()
        self.breakers: BreakerSource | None = None
        self._client = None
        self._client_url: str | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.redis_url:
            yield from self._queue_depth()
        if self.breakers is not None:
            yield from self._breakers()

    def _queue_depth(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
        )
        failed = GaugeMetricFamily(
            f"{NAMESPACE}_queue_failed_jobs",
            "Jobs in each queue's RQ failed-job registry (retries spent)",
            labels=["queue"],
        )
        try:
            pipe = self._redis().pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(f"rq:queue:{queue}")
                pipe.zcard(f"rq:failed:{queue}")
            counts = pipe.execute()
        except Exception as exc:
            log.warning("queue depth not collected: %s", type(exc).__name__)
            return
        for i, queue in enumerate(self.queues):
            depth.add_metric([queue], counts[2 * i])
            failed.add_metric([queue], counts[2 * i + 1])
        yield depth
        yield failed

    def _redis(self):  # type: ignore[no-untyped-def]
        # Short timeouts: a stuck Redis must not hang the scrape (and the web worker with it).
        if self._client is None or self._client_url != self.redis_url:
            from redis import Redis

            self._client = Redis.from_url(
                self.redis_url, socket_connect_timeout=1, socket_timeout=1
            )
            self._client_url = self.redis_url
        return self._client

    def _breakers(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_circuit_breaker_state",
            "Circuit breaker per gateway: 0 closed, 1 half-open, 2 open",
            labels=["gateway"],
        )
        try:
            states = dict(self.breakers())  # type: ignore[misc]
        except Exception as exc:
            log.warning("circuit breaker states not collected: %s", type(exc).__name__)
            return
        for gateway, state in sorted(states.items()):
            value = state if isinstance(state, int) else BREAKER_VALUES.get(str(state), -1)
            family.add_metric([gateway], value)
        yield family


scrape_time = ScrapeTimeCollector()


def watch_queues(redis_url: str | None, queues: tuple[str, ...]) -> None:
    """Report ``queue_depth`` for ``queues`` from ``redis_url`` (None: not reported)."""
    scrape_time.redis_url, scrape_time.queues = redis_url, queues


def set_circuit_breaker_source(source: BreakerSource | None) -> None:
    """Report ``circuit_breaker_state`` from ``source()``: ``{gateway: "closed" | "half_open" |
    "open"}`` (or 0/1/2). None stops reporting."""
    scrape_time.breakers = source


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (aggregated across processes in multi-process
    mode), and its content type."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    registry.register(scrape_time)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Delegate(Collector):
    """Exposes the default registry inside a per-scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):  # type: ignore[no-untyped-def]
        return self.registry.collect()
