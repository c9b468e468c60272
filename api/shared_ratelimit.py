"""A rate limit shared by every API process: :class:`SharedRateLimiter` (Redis, GCRA).

With several API processes behind a load balancer, an in-process token bucket gives a client N
times its rate. When ``FEISHUI_REDIS_URL`` is set, the API-key limit and the portal's code
look-up limit use this limiter instead: one Redis key per client, updated by one Lua script
(atomic, one round trip), timed by Redis's own clock so that the processes agree.

The algorithm is GCRA (the generic cell rate algorithm), which behaves like the in-process token
bucket (:class:`api.security.RateLimiter`): ``rate`` requests per ``per`` seconds, bursts up to
``rate``, and the wait it returns is the time until the next request would be allowed. The key
stores one number, the "theoretical arrival time", and expires when the client is idle.

If Redis cannot be reached, the limiter falls back to its in-process bucket (and logs it, at
most once a minute): a Redis outage weakens the limit to per-process; it never refuses or
fails requests.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import lru_cache

from redis import Redis
from redis.exceptions import RedisError

from api.security import RateLimiter

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def limiter_redis(url: str) -> Redis:
    """One client (one connection pool) per URL for all the limits of a process, with short
    timeouts: a slow Redis must not hold a request up (the limits fall back instead)."""
    return Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)


# KEYS[1]: the client's key. ARGV[1]: emission interval (ms, per / rate); ARGV[2]: the burst
# window (ms, per). Returns 0 when allowed, else the milliseconds to wait, as a string.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return tostring(allow_at - now)
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now))
return '0'
"""


class SharedRateLimiter:
    """``rate`` requests per ``per`` seconds per client, counted across processes in Redis."""

    shared = True

    def __init__(
        self,
        rate: int,
        per: float,
        redis: Redis,
        name: str,
        *,
        fallback: RateLimiter | None = None,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be >= 1 and per > 0")
        self.rate, self.per, self.name = rate, per, name
        self.fallback = fallback or RateLimiter(rate, per)
        self._redis = redis
        self._script = redis.register_script(_GCRA)
        self._args = (per * 1000 / rate, per * 1000)
        self._last_warning = 0.0

    @classmethod
    def from_url(cls, url: str, rate: int, per: float, name: str) -> SharedRateLimiter:
        redis = limiter_redis(url)
        return cls(rate, per, redis, name)

    def hit(self, client: str) -> float:
        """Take one request; returns 0 if allowed, else the seconds until one would be."""
        try:
            key = f"feishui:rl:{self.name}:{client}"
            wait_ms = float(self._script(keys=[key], args=self._args))
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return self.fallback.hit(client)
        return wait_ms / 1000

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(
                "rate limit %s: Redis unreachable (%s); limiting per process meanwhile",
                self.name,
                type(exc).__name__,
            )


class LocalBlocks:
    """Keys blocked until a moment, in memory (one process)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            self._until[key] = max(self._until.get(key, 0.0), time.monotonic() + seconds)

    def remaining(self, key: str) -> float:
        with self._lock:
            left = self._until.get(key, 0.0) - time.monotonic()
            if left <= 0:
                self._until.pop(key, None)
            return max(0.0, left)


class SharedBlocks:
    """Keys blocked until a moment, in Redis (every process sees them): one key with a TTL per
    blocked key. Falls back to :class:`LocalBlocks` while Redis is unreachable."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._redis, self.name, self.fallback = redis, name, LocalBlocks()

    def _key(self, key: str) -> str:
        return f"feishui:rl:{self.name}:{key}"

    def block(self, key: str, seconds: float) -> None:
        self.fallback.block(key, seconds)  # also here, so an outage right after still blocks
        try:
            self._redis.set(self._key(key), "1", px=max(1, math.ceil(seconds * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("blocks %s: Redis unreachable (%s)", self.name, type(exc).__name__)

    def remaining(self, key: str) -> float:
        try:
            ttl_ms = self._redis.pttl(self._key(key))
        except (RedisError, OSError):
            return self.fallback.remaining(key)
        return max(0.0, ttl_ms / 1000) if ttl_ms and ttl_ms > 0 else 0.0


def make_blocks(name: str, redis_url: str | None) -> LocalBlocks | SharedBlocks:
    if redis_url:
        redis = limiter_redis(redis_url)
        return SharedBlocks(redis, name)
    return LocalBlocks()


def make_limiter(rate: int, per: float, name: str, redis_url: str | None):
    """The shared limiter when Redis is configured, else the in-process one."""
    if redis_url:
        return SharedRateLimiter.from_url(redis_url, rate, per, name)
    return RateLimiter(rate, per)
