"""Rate limits with GCRA (the generic cell rate algorithm: a token bucket kept as one timestamp).

A limit is ``rate`` requests per second with a ``burst``. Each key stores its theoretical arrival
time (TAT). A request at ``now`` is allowed when ``TAT - now <= (burst - 1) * T`` (T = 1/rate);
then ``TAT = max(TAT, now) + T``. Remaining = how many more would pass now; Reset = seconds until
the bucket is full again; Retry-After = seconds until the next request would pass.

In Redis the check-and-set is one Lua script (atomic, using Redis' own clock so gateway replicas
with skewed clocks agree); without Redis the same arithmetic runs in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter
from redis.exceptions import NoScriptError, RedisError

log = structlog.get_logger(__name__)

LIMITED = Counter("modelserve_gateway_rate_limited_total", "Requests refused by a rate limit.", ["scope"])
LIMITER_ERRORS = Counter(
    "modelserve_gateway_rate_limiter_errors_total",
    "Rate-limit checks that failed (Redis unreachable).",
    ["mode"],
)


@dataclass(frozen=True)
class Limit:
    rate: float  # requests per second
    burst: int

    @classmethod
    def of(cls, rate: float, burst: int) -> Limit | None:
        if rate <= 0:
            return None
        return cls(rate, burst if burst > 0 else max(1, math.ceil(rate)))

    @property
    def period_s(self) -> float:
        """The window the RateLimit-Limit header speaks of: the time to refill the burst."""
        return self.burst / self.rate


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float

    def headers(self) -> list[tuple[str, str]]:
        h = [
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(math.ceil(self.reset_s))),
        ]
        if not self.allowed:
            h.append(("retry-after", str(max(1, math.ceil(self.retry_after_s)))))
        return h


def _decide(tat: float, now: float, limit: Limit) -> tuple[Decision, float | None]:
    """Pure GCRA step; returns the decision and the new TAT (None when refused)."""
    t = 1.0 / limit.rate
    tolerance = (limit.burst - 1) * t
    tat = max(tat, now)
    if tat - now > tolerance + 1e-9:
        retry = tat - now - tolerance
        return Decision(False, limit.burst, 0, tat - now, retry), None
    new_tat = tat + t
    remaining = int((tolerance - (new_tat - now - t)) / t + 1e-9)
    return Decision(True, limit.burst, max(0, remaining), new_tat - now, 0.0), new_tat


class RateLimiter(Protocol):
    async def check(self, key: str, limit: Limit) -> Decision: ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """GCRA in a dict: one gateway replica's view (used when no Redis is configured)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def check(self, key: str, limit: Limit) -> Decision:
        now = time.monotonic()
        decision, new_tat = _decide(self._tat.get(key, now), now, limit)
        if new_tat is not None:
            self._tat[key] = new_tat
            if len(self._tat) > 100_000:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
        return decision

    async def close(self) -> None:
        return None


# KEYS[1]: the key. ARGV: rate (req/s), burst. Times in microseconds from Redis TIME.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local period = 1000000 / rate
local tolerance = (burst - 1) * period
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance + 1 then
  return {0, 0, tostring(tat - now), tostring(tat - now - tolerance)}
end
local new_tat = tat + period
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((tolerance - (new_tat - now - period)) / period + 0.000001)
if remaining < 0 then remaining = 0 end
return {1, remaining, tostring(new_tat - now), '0'}
"""


class RedisRateLimiter:
    """GCRA in Redis: one atomic script per check, shared by every gateway replica.

    One Redis exchange at a time: a check that finds none in flight calls the script at once;
    checks that arrive while one is in flight wait and then go together, as one pipeline (one
    write, one read, one connection from the pool for the whole batch). Under concurrent load
    that removes most of the per-check round trips and syscalls; a lone check costs what it did."""

    def __init__(self, url: str, *, prefix: str = "modelserve:ratelimit:", fail_open: bool = True) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(GCRA_LUA)
        self._prefix = prefix
        self.fail_open = fail_open
        self._busy = False
        self._queue: list[tuple[str, Limit, asyncio.Future[Decision]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def check(self, key: str, limit: Limit) -> Decision:
        if self._busy:
            fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
            self._queue.append((self._prefix + key, limit, fut))
            return await fut
        self._busy = True
        try:
            return self._decision(await self._one(self._prefix + key, limit), limit)
        finally:
            if self._queue:
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False

    async def _one(self, key: str, limit: Limit) -> Any:
        try:
            return await self._script(keys=[key], args=[repr(limit.rate), limit.burst])
        except (TimeoutError, RedisError, OSError) as exc:
            return exc

    async def _drain(self) -> None:
        """Sends the waiting checks as pipelines until none wait."""
        batch: list[tuple[str, Limit, asyncio.Future[Decision]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                replies = await self._many(batch)
                for (_, limit, fut), reply in zip(batch, replies, strict=True):
                    if fut.done():  # its caller was cancelled
                        continue
                    try:
                        fut.set_result(self._decision(reply, limit))
                    except LimiterUnavailable as exc:
                        fut.set_exception(exc)
        finally:
            self._busy = False
            # only when cancelled (shutdown) or failed: the batch in flight and the checks still
            # waiting get an answer, nothing waits forever
            for _, _, fut in [*batch, *self._queue]:
                if not fut.done():
                    fut.set_exception(LimiterUnavailable("rate limiter closed"))
            self._queue = []

    async def _many(self, batch: list[tuple[str, Limit, asyncio.Future[Decision]]]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for key, limit, _ in batch:
            pipe.evalsha(self._script.sha, 1, key, repr(limit.rate), limit.burst)
        try:
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except (TimeoutError, RedisError, OSError) as exc:
            return [exc] * len(batch)
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted or flushed
            return [
                await self._one(key, limit) if isinstance(r, NoScriptError) else r
                for (key, limit, _), r in zip(batch, replies, strict=True)
            ]
        return replies

    def _decision(self, reply: Any, limit: Limit) -> Decision:
        if isinstance(reply, BaseException):
            mode = "open" if self.fail_open else "closed"
            LIMITER_ERRORS.labels(mode).inc()
            log.warning("ratelimit.redis_unavailable", fail_mode=mode, error=type(reply).__name__)
            if self.fail_open:
                return Decision(True, limit.burst, limit.burst, 0.0, 0.0)
            raise LimiterUnavailable("rate limiter unavailable")
        allowed, remaining, reset_us, retry_us = reply
        return Decision(
            bool(int(allowed)), limit.burst, int(remaining), float(reset_us) / 1e6, float(retry_us) / 1e6
        )

    async def close(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        for _, _, fut in self._queue:  # a drainer cancelled before it ran leaves them queued
            if not fut.done():
                fut.set_exception(LimiterUnavailable("rate limiter closed"))
        self._queue = []
        await self._redis.aclose()


class LimiterUnavailable(Exception):
    """Redis is unreachable and the limiter is configured fail-closed."""
