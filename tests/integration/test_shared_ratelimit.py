"""The rate limit shared by API processes through Redis (``api/shared_ratelimit.py``), on a real
Redis: two limiters stand for two processes."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from api.security import RateLimiter
from api.shared_ratelimit import SharedRateLimiter, make_limiter
from clearing.db import transaction
from notices import departments
from tests.conftest import REDIS_URL, unavailable
from tests.e2e.test_observability import auth, build

pytestmark = pytest.mark.redis


@pytest.fixture
def redis() -> Redis:
    client = Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        unavailable("Redis", exc)
    for key in client.scan_iter("feishui:rl:*"):
        client.delete(key)
    return client


def limiter(redis: Redis, rate: int, per: float, name: str | None = None) -> SharedRateLimiter:
    return SharedRateLimiter(rate, per, redis, name or uuid.uuid4().hex)


def test_two_processes_share_one_budget(redis):
    name = uuid.uuid4().hex
    a, b = limiter(redis, 3, 60, name), limiter(redis, 3, 60, name)
    waits = [a.hit("key-1"), b.hit("key-1"), a.hit("key-1"), b.hit("key-1")]
    assert waits[:3] == [0, 0, 0]
    assert 19 <= waits[3] <= 20  # one request per 20 s once the burst of 3 is spent
    assert a.hit("key-2") == 0  # another client has its own budget


def test_it_behaves_like_the_in_process_bucket(redis):
    shared, local = limiter(redis, 2, 1), RateLimiter(2, 1)
    for _ in range(2):
        assert shared.hit("c") == local.hit("c") == 0
    assert shared.hit("c") == pytest.approx(local.hit("c"), abs=0.05)  # about 0.5 s
    key = next(redis.scan_iter(f"feishui:rl:{shared.name}:c"))
    assert 0 < redis.pttl(key) <= 1000  # forgotten once the client is idle


def test_refused_requests_do_not_spend_the_budget(redis):
    shared = limiter(redis, 1, 0.4)
    assert shared.hit("c") == 0
    assert all(shared.hit("c") > 0 for _ in range(5))
    redis_wait = shared.hit("c")
    assert redis_wait <= 0.4  # refusals did not push the next allowed time further out


def test_without_redis_it_limits_per_process():
    gone = SharedRateLimiter.from_url("redis://127.0.0.1:1/0", 2, 60, "gone")
    assert [gone.hit("c") == 0 for _ in range(3)] == [True, True, False]


def test_make_limiter_picks_by_configuration():
    assert isinstance(make_limiter(5, 1, "x", None), RateLimiter)
    assert isinstance(make_limiter(5, 1, "x", REDIS_URL), SharedRateLimiter)


def test_two_api_processes_enforce_one_limit_per_key(db, tmp_path, redis):
    with transaction(db.sessions) as s:
        key = departments.create_department(s, "dept-shared", "510100", "agency").full
    one = build(db, tmp_path / "one", api_rate="2/60s", redis_url=REDIS_URL)
    two = build(db, tmp_path / "two", api_rate="2/60s", redis_url=REDIS_URL)
    with TestClient(one) as a, TestClient(two) as b:
        assert a.get("/v1/catalogue", headers=auth(key)).status_code == 200
        assert b.get("/v1/catalogue", headers=auth(key)).status_code == 200
        refused = a.get("/v1/catalogue", headers=auth(key))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert b.get("/v1/catalogue", headers=auth(key)).status_code == 429


def test_failed_logins_are_counted_across_processes(redis):
    from api.finance_auth import LoginGuard, TooManyAttempts

    user = f"user:{uuid.uuid4().hex}"
    one, two = LoginGuard(5, 300, REDIS_URL), LoginGuard(5, 300, REDIS_URL)
    for guard in (one, two, one, two):  # 4 failures: still allowed
        guard.check(user)
        guard.failed(user)
    one.check(user)
    two.failed(user)  # the 5th, on the other process, blocks the name everywhere
    for guard in (one, two):
        with pytest.raises(TooManyAttempts):
            guard.check(user)
    one.check("user:someone-else")


def test_blocks_survive_a_redis_outage_in_the_process_that_set_them():
    from api.shared_ratelimit import make_blocks

    blocks = make_blocks("gone", "redis://127.0.0.1:1/0")
    blocks.block("k", 30)
    assert 29 <= blocks.remaining("k") <= 30
    assert blocks.remaining("other") == 0
