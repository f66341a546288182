"""RedisRateLimiter against a real Redis: checks that arrive while one is in flight go together as
one pipeline, and decide exactly as one script call each would (GCRA counts, refusals, the
script reloaded after SCRIPT FLUSH, the fail mode when Redis is gone)."""

from __future__ import annotations

import asyncio

import pytest

from modelserve_gateway.ratelimit import Limit, LimiterUnavailable, RedisRateLimiter


async def test_concurrent_checks_are_batched_and_count_exactly(throwaway_redis) -> None:
    rl = RedisRateLimiter(throwaway_redis.url)
    try:
        limit = Limit(0.01, 5)  # burst 5, no refill during the test: the 6th is refused
        decisions = await asyncio.gather(*[rl.check("k", limit) for _ in range(8)])
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert all(d.retry_after_s > 0 for d in decisions[5:])
        # another key is counted apart, in the same kind of batch
        other = await asyncio.gather(*[rl.check("other", limit) for _ in range(3)])
        assert all(d.allowed for d in other)
    finally:
        await rl.close()


async def test_batch_reloads_the_script_after_a_flush(throwaway_redis) -> None:
    rl = RedisRateLimiter(throwaway_redis.url)
    try:
        limit = Limit(0.01, 100)  # no refill during the test
        await rl.check("k", limit)  # loads the script
        await rl._redis.script_flush()
        decisions = await asyncio.gather(*[rl.check("k", limit) for _ in range(4)])
        assert all(d.allowed for d in decisions)
        assert [d.remaining for d in decisions] == [98, 97, 96, 95]
    finally:
        await rl.close()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_batched_checks_follow_the_fail_mode(throwaway_redis, fail_open: bool) -> None:
    rl = RedisRateLimiter(throwaway_redis.url, fail_open=fail_open)
    try:
        limit = Limit(0.01, 5)
        await rl.check("k", limit)
        throwaway_redis.stop()
        results = await asyncio.gather(*[rl.check("k", limit) for _ in range(4)], return_exceptions=True)
        if fail_open:
            assert all(not isinstance(r, BaseException) and r.allowed for r in results)
        else:
            assert all(isinstance(r, LimiterUnavailable) for r in results)
    finally:
        await rl.close()


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
async def test_close_answers_every_waiting_check(throwaway_redis, yields: int) -> None:
    """close() while checks wait behind one in flight (their batch not yet sent, or being sent):
    each gets a decision or LimiterUnavailable, none waits forever."""
    rl = RedisRateLimiter(throwaway_redis.url)
    limit = Limit(0.01, 100)
    await rl.check("k", limit)  # the script is loaded
    checks = [asyncio.ensure_future(rl.check("k", limit)) for _ in range(6)]
    # until the lone check is answered and the others wait for the drainer (it always comes: the
    # lone check ends within the socket timeout); sleep(0), not an Event: the drainer must not
    # have started yet when yields == 0
    while rl._drainer is None:  # noqa: ASYNC110
        await asyncio.sleep(0)
    for _ in range(yields):  # the drainer not started yet, or sending its batch
        await asyncio.sleep(0)
    await rl.close()
    results = await asyncio.wait_for(asyncio.gather(*checks, return_exceptions=True), 30)
    assert all(isinstance(r, LimiterUnavailable) or r.allowed for r in results), results
    assert len(results) == 6
