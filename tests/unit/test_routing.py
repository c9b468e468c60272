"""Routing rules, fallback order and the circuit breaker (no I/O; a fake clock)."""

from __future__ import annotations

import pytest

from clearing.routing import BreakerState, GatewayRule, NoRoute, Router


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def router(clock=None, **kw) -> Router:
    rules = [
        GatewayRule("alipay", "wallet", priority=10, max_fen=10_000),
        GatewayRule("wechatpay", "wallet", priority=20),
        GatewayRule("unionpay", "bank", priority=10),
        GatewayRule("oldbank", "bank", priority=5, enabled=False),
    ]
    return Router(rules, failure_threshold=2, open_seconds=30, clock=clock or Clock(), **kw)


def first(r: Router, channel: str, fen: int):
    return next(r.routes(channel, fen))


def test_channel_and_priority():
    r = router()
    assert first(r, "wallet", 500).gateway == "alipay"
    assert first(r, "bank", 500).gateway == "unionpay"
    assert "oldbank disabled" in first(r, "bank", 500).reason


def test_amount_limits_route_to_the_next_gateway():
    route = first(router(), "wallet", 20_000)
    assert route.gateway == "wechatpay"
    assert "alipay outside its amount limits" in route.reason


def test_fallback_order_when_the_first_fails():
    routes = router().routes("wallet", 500)
    assert next(routes).gateway == "alipay"
    second = next(routes)
    assert second.gateway == "wechatpay" and "alipay failed" in second.reason
    with pytest.raises(NoRoute):
        next(routes)


def test_breaker_opens_after_consecutive_failures_then_probes():
    clock = Clock()
    r = router(clock)
    r.failure("alipay")
    assert first(r, "wallet", 500).gateway == "alipay"  # one failure: still closed
    r.failure("alipay")
    assert r.health()["alipay"] == BreakerState.OPEN
    assert first(r, "wallet", 500).gateway == "wechatpay"
    clock.now = 31
    assert r.health()["alipay"] == BreakerState.HALF_OPEN
    assert first(r, "wallet", 500).gateway == "alipay"  # the probe
    assert first(r, "wallet", 500).gateway == "wechatpay"  # only one probe at a time
    r.success("alipay")
    assert r.health()["alipay"] == BreakerState.CLOSED


def test_failed_probe_reopens():
    clock = Clock()
    r = router(clock)
    r.failure("alipay"), r.failure("alipay")
    clock.now = 31
    assert first(r, "wallet", 500).gateway == "alipay"
    r.failure("alipay")
    assert r.health()["alipay"] == BreakerState.OPEN


def test_no_route_names_why():
    r = router()
    r.failure("unionpay"), r.failure("unionpay")
    with pytest.raises(NoRoute, match="unionpay circuit open"):
        first(r, "bank", 500)


def test_a_success_resets_the_failure_count():
    r = router()
    r.failure("alipay"), r.success("alipay"), r.failure("alipay")
    assert r.health()["alipay"] == BreakerState.CLOSED
