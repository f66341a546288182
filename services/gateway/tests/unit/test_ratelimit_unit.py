"""GCRA arithmetic (the in-process limiter; the Redis script is tested against real Redis)."""

from __future__ import annotations

import pytest

from modelserve_gateway.ratelimit import Limit, MemoryRateLimiter, _decide


async def test_memory_limiter_six_per_minute_counts_down_then_refuses() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit.of(0.1, 6)
    assert limit is not None
    remaining = [(await limiter.check("k", limit)).remaining for _ in range(6)]
    assert remaining == [5, 4, 3, 2, 1, 0]
    refused = await limiter.check("k", limit)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(10, abs=0.5)
    assert dict(refused.headers())["retry-after"] == "10"
    # Another key has its own budget.
    assert (await limiter.check("other", limit)).allowed


def test_gcra_refills_one_request_per_period() -> None:
    limit = Limit(rate=1.0, burst=2)
    d1, tat = _decide(0.0, 0.0, limit)
    assert tat is not None
    d2, tat = _decide(tat, 0.0, limit)
    assert tat is not None
    d3, none = _decide(tat, 0.0, limit)
    assert (d1.allowed, d2.allowed, d3.allowed, none) == (True, True, False, None)
    d4, _ = _decide(tat, 1.0, limit)
    assert d4.allowed and d4.remaining == 0


def test_limit_of_zero_rate_is_unlimited() -> None:
    assert Limit.of(0, 10) is None
    assert Limit.of(2.5, 0) == Limit(2.5, 3)
