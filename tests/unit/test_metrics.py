"""Metrics: the domain counters and the scrape-time gauges in the exposition text."""

from __future__ import annotations

import pytest

from clearing import metrics


@pytest.fixture(autouse=True)
def no_scrape_sources():
    yield
    metrics.watch_queues(None, ())
    metrics.set_circuit_breaker_source(None)


def test_domain_counters_are_exposed():
    metrics.captures.labels(gateway="alipay", outcome="captured").inc()
    metrics.notices_created.labels(kind="traffic_fine").inc(2)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'feishui_captures_total{gateway="alipay",outcome="captured"}' in text
    assert 'feishui_notices_created_total{kind="traffic_fine"}' in text
    for name in (
        "notify_verification_failures",
        "reconciliation_outcomes",
        "job_failures",
        "http_request_duration_seconds",
    ):
        assert f"# TYPE feishui_{name}" in text


def test_circuit_breaker_states_come_from_the_callback():
    metrics.set_circuit_breaker_source(
        lambda: {"alipay": "open", "unionpay": "closed", "wechatpay": 1}
    )
    text = metrics.render()[0].decode()
    assert 'feishui_circuit_breaker_state{gateway="alipay"} 2.0' in text
    assert 'feishui_circuit_breaker_state{gateway="unionpay"} 0.0' in text
    assert 'feishui_circuit_breaker_state{gateway="wechatpay"} 1.0' in text


def test_a_failing_source_is_left_out_not_raised():
    def broken():
        raise RuntimeError("down")

    metrics.set_circuit_breaker_source(broken)
    metrics.watch_queues("redis://127.0.0.1:1/0", ("ledger",))
    text = metrics.render()[0].decode()
    assert "feishui_circuit_breaker_state{" not in text and "feishui_queue_depth{" not in text
