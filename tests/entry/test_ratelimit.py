"""Per-partner rate limits through the SDK: 429 with Retry-After and rate-limit headers."""

from __future__ import annotations

import os

import pytest
from entry_support import READER, TRAVEL

from core.sdk import RateLimited

REDIS_URL = os.environ.get("SCENEOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def exhaust(bank, limit: int) -> RateLimited:
    for n in range(limit):
        answer = bank.get("/v1/me")
        assert answer.headers["ratelimit-remaining"] == str(limit - n - 1)
    with pytest.raises(RateLimited) as refused:
        bank.get("/v1/me")
    return refused.value


def test_a_partner_over_its_limit_gets_429_and_others_do_not(entry_app, partner_client) -> None:
    app = entry_app(rate_limit="5/minute")
    travel = partner_client(app, *TRAVEL, max_retries=0)
    refused = exhaust(travel, 5)
    assert refused.code == "rate_limited" and refused.status == 429
    assert 1 <= refused.retry_after <= 60
    assert refused.headers["ratelimit-limit"] == "5" and refused.headers["ratelimit-remaining"] == "0"
    assert refused.request_id
    # Another partner of the same bank has its own window (the bank default).
    assert partner_client(app, *READER).get("/v1/me").headers["ratelimit-limit"] == "50"


def _redis_reason() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_limits_are_shared_through_redis(entry_app, partner_client) -> None:
    reason = _redis_reason()
    if reason is not None:
        message = f"Redis not reachable at {REDIS_URL} ({reason}); set SCENEOS_TEST_REDIS_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " — required under CI=true")
        pytest.skip(message)
    from infra.entry.runtime import entry_of

    first = entry_app(rate_limit="4/minute", rate_limit_storage=REDIS_URL)
    entry_of(first).rate_limiter.reset()
    second = entry_app(rate_limit="4/minute", rate_limit_storage=REDIS_URL)  # another "worker"
    assert partner_client(first, *TRAVEL).get("/v1/me").status_code == 200
    assert partner_client(second, *TRAVEL).get("/v1/me").headers["ratelimit-remaining"] == "2"
    refused = exhaust(partner_client(first, *TRAVEL, max_retries=0), 2)
    assert refused.code == "rate_limited"
    entry_of(first).rate_limiter.reset()


def test_memory_limiter_sweeps_without_a_thread_per_request() -> None:
    """limits' own memory storage starts a new timer thread whenever its 10 ms timer has run out
    (nearly every request under traffic); ours sweeps expired entries from one long-lived thread."""
    import time

    from infra.entry.ratelimit import SWEEP_SECONDS, PartnerRateLimiter, SweptMemoryStorage

    limiter = PartnerRateLimiter("memory://")
    assert isinstance(limiter.storage, SweptMemoryStorage)
    timer = limiter.storage.timer  # the library replaces it each time it starts a new one
    decisions = []
    for _ in range(160):
        decisions.append(limiter.hit("bank", "travel", "150/minute"))
        time.sleep(0.0002)
    assert limiter.storage.timer is timer
    assert [d.allowed for d in decisions].count(True) == 150 and decisions[-1].remaining == 0

    limiter.hit("bank", "travel", "2/second")
    time.sleep(1 + 2 * SWEEP_SECONDS)  # that window has passed and a sweep has run
    assert [len(events) for events in limiter.storage.events.values() if events] == [150]  # the minute's
