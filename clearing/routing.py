"""Routing: the citizen picks a channel (bank or wallet); routing picks the gateway.

Rules per gateway: its channel, whether it is enabled, amount limits and a priority; the healthy
candidates are tried in priority order (the fallback order). A circuit breaker per gateway opens
after ``failure_threshold`` consecutive errors or timeouts, refuses the gateway for
``open_seconds``, then lets one probe through (half-open): success closes it, failure reopens it.
Routing happens before the redirect only. Once a citizen is sent to a gateway, the attempt stays
with it. Breaker state is per process (each API process learns on its own), which is enough to
stop hammering a failing gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from clearing.errors import FeishuiError
from clearing.money import format_fen


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class NoRoute(FeishuiError):
    type = "no-gateway-available"
    status = 503


@dataclass(frozen=True)
class GatewayRule:
    gateway: str
    channel: str
    priority: int = 100
    """Lower first: the fallback order within a channel."""
    enabled: bool = True
    min_fen: int = 1
    max_fen: int | None = None


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.open_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a request go to this gateway now? In half-open, only one probe at a time."""
        with self._lock:
            state = self.state
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self.probing:
                self.probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.probing or self.failures >= self.failure_threshold:
                self.opened_at, self.probing = self.clock(), False


@dataclass(frozen=True)
class Route:
    gateway: str
    reason: str


class Router:
    """Choose a gateway for a channel and amount; learn from each gateway call's outcome."""

    def __init__(
        self,
        rules: Iterable[GatewayRule],
        *,
        failure_threshold: int = 5,
        open_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rules = sorted(rules, key=lambda r: (r.priority, r.gateway))
        self.breakers = {
            r.gateway: CircuitBreaker(failure_threshold, open_seconds, clock) for r in self.rules
        }

    def channels(self) -> list[str]:
        """Channels with at least one enabled gateway, in a stable order."""
        return sorted({r.channel for r in self.rules if r.enabled})

    def routes(self, channel: str, amount_fen: int) -> Iterator[Route]:
        """Gateways that may take this payment, best first, each with the reason it was chosen.

        Lazy on purpose: a half-open breaker's single probe is claimed only when the caller
        actually asks for that gateway, so take the next route only after the previous failed
        (and was reported with :meth:`failure`). Raises NoRoute when none is left.
        """
        skipped: list[str] = []
        for rule in (r for r in self.rules if r.channel == channel):
            why_not = self._why_not(rule, amount_fen)
            if why_not:
                skipped.append(f"{rule.gateway} {why_not}")
                continue
            reason = f"channel {channel}, priority {rule.priority}"
            yield Route(rule.gateway, "; ".join([reason, *(f"skipped {s}" for s in skipped)]))
            skipped.append(f"{rule.gateway} failed")
        raise NoRoute(
            f"no {channel} gateway can take {format_fen(amount_fen)} now"
            + (f" ({'; '.join(skipped)})" if skipped else "")
        )

    def _why_not(self, rule: GatewayRule, amount_fen: int) -> str | None:
        if not rule.enabled:
            return "disabled"
        if amount_fen < rule.min_fen or (rule.max_fen is not None and amount_fen > rule.max_fen):
            return "outside its amount limits"
        if not self.breakers[rule.gateway].allow():
            return "circuit open"
        return None

    def success(self, gateway: str) -> None:
        self.breakers[gateway].success()

    def failure(self, gateway: str) -> None:
        self.breakers[gateway].failure()

    def health(self) -> dict[str, str]:
        return {g: b.state.value for g, b in self.breakers.items()}


DEFAULT_RULES = (
    GatewayRule("alipay", "wallet", priority=10, max_fen=5_000_000),
    GatewayRule("wechatpay", "wallet", priority=20, max_fen=5_000_000),
    GatewayRule("unionpay", "bank", priority=10),
)
