"""The work queue and the progress events: Redis Streams (a consumer group for work, with XAUTOCLAIM
for reclaiming entries of dead replicas; one stream per execution for events) or in-process
equivalents when no Redis is configured. Redis holds nothing the database cannot rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from modelserve_common.errors import Unavailable

Message = tuple[str, str]  # (queue message id, execution id)


class QueueUnavailable(Unavailable):
    """Redis cannot be reached."""


class Subscription(Protocol):
    async def next(self, timeout_s: float) -> dict[str, Any] | None:
        """The next event, or None when none arrived within the timeout."""
        ...


class WorkQueue(Protocol):
    async def enqueue(self, execution_id: str) -> None: ...

    async def receive(self, count: int, block_s: float) -> list[Message]: ...

    async def ack(self, message_id: str) -> None: ...

    async def reclaim(self, min_idle_s: float, count: int) -> list[Message]: ...

    async def publish(self, execution_id: str, *events: dict[str, Any]) -> None: ...

    def subscribe(self, execution_id: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryWorkQueue:
    """One process: an asyncio queue and in-memory event fan-out."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._seq = 0

    async def enqueue(self, execution_id: str) -> None:
        self._queue.put_nowait(execution_id)

    async def receive(self, count: int, block_s: float) -> list[Message]:
        try:
            first = await asyncio.wait_for(self._queue.get(), block_s)
        except TimeoutError:
            return []
        out = [first]
        while len(out) < count and not self._queue.empty():
            out.append(self._queue.get_nowait())
        msgs = []
        for e in out:
            self._seq += 1
            msgs.append((str(self._seq), e))
        return msgs

    async def ack(self, message_id: str) -> None:
        return None

    async def reclaim(self, min_idle_s: float, count: int) -> list[Message]:
        return []

    async def publish(self, execution_id: str, *events: dict[str, Any]) -> None:
        for q in list(self._subs.get(execution_id, ())):
            for event in events:
                q.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, execution_id: str) -> AsyncIterator[Subscription]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subs[execution_id].add(q)
        try:
            yield _MemorySub(q)
        finally:
            self._subs[execution_id].discard(q)
            if not self._subs[execution_id]:
                del self._subs[execution_id]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _MemorySub:
    def __init__(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._q = q

    async def next(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self._q.get(), timeout_s)
        except TimeoutError:
            return None


class RedisWorkQueue:
    """Work: stream ``<prefix>work`` read through consumer group ``workers``; an entry stays
    pending until acknowledged, and entries idle past the visibility timeout are reclaimed with
    XAUTOCLAIM. Events: stream ``<prefix>events:<id>`` (capped, expiring), read with XREAD."""

    GROUP = "workers"

    def __init__(self, url: str, prefix: str, consumer: str, events_ttl_s: int = 86400) -> None:
        self._r = aioredis.from_url(url, decode_responses=True)
        self._work = f"{prefix}work"
        self._events = f"{prefix}events:"
        self._consumer = consumer
        self._ttl = events_ttl_s
        self._group_ready = False

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._r.xgroup_create(self._work, self.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def enqueue(self, execution_id: str) -> None:
        try:
            await self._r.xadd(self._work, {"e": execution_id})
        except RedisError as exc:
            raise QueueUnavailable(f"work queue unavailable: {exc}") from exc

    async def receive(self, count: int, block_s: float) -> list[Message]:
        await self._ensure_group()
        resp: Any = await self._r.xreadgroup(
            self.GROUP, self._consumer, {self._work: ">"}, count=count, block=max(1, int(block_s * 1000))
        )
        return [(mid, fields["e"]) for _, entries in resp or [] for mid, fields in entries]

    async def ack(self, message_id: str) -> None:
        async with self._r.pipeline(transaction=False) as p:
            p.xack(self._work, self.GROUP, message_id)
            p.xdel(self._work, message_id)
            await p.execute()

    async def reclaim(self, min_idle_s: float, count: int) -> list[Message]:
        await self._ensure_group()
        resp = await self._r.xautoclaim(
            self._work,
            self.GROUP,
            self._consumer,
            min_idle_time=int(min_idle_s * 1000),
            start_id="0-0",
            count=count,
        )
        entries = resp[1] if resp else []
        return [(mid, fields["e"]) for mid, fields in entries if fields]

    async def publish(self, execution_id: str, *events: dict[str, Any]) -> None:
        """Appends events to the execution's stream in one round trip."""
        key = self._events + execution_id
        async with self._r.pipeline(transaction=False) as p:
            for event in events:
                p.xadd(key, {"v": json.dumps(event)}, maxlen=1000, approximate=True)
            p.expire(key, self._ttl)
            await p.execute()

    @contextlib.asynccontextmanager
    async def subscribe(self, execution_id: str) -> AsyncIterator[Subscription]:
        key = self._events + execution_id
        last = await self._r.xrevrange(key, count=1)
        yield _RedisSub(self._r, key, str(last[0][0]) if last else "0-0")

    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose()


class _RedisSub:
    def __init__(self, r: aioredis.Redis, key: str, cursor: str) -> None:
        self._r = r
        self._key = key
        self._cursor = cursor
        self._buffer: list[dict[str, Any]] = []

    async def next(self, timeout_s: float) -> dict[str, Any] | None:
        if not self._buffer:
            resp: Any = await self._r.xread(
                {self._key: self._cursor}, block=max(1, int(timeout_s * 1000)), count=100
            )
            for _, entries in resp or []:
                for mid, fields in entries:
                    self._cursor = mid
                    self._buffer.append(json.loads(fields["v"]))
        return self._buffer.pop(0) if self._buffer else None
