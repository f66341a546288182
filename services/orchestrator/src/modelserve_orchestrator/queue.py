"""The work queue and the progress events: Redis Streams (a consumer group for work, with XAUTOCLAIM
for reclaiming entries of dead replicas; one stream per execution for events) or in-process
equivalents when no Redis is configured. Redis holds nothing the database cannot rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from modelserve_common.errors import Unavailable

log = structlog.get_logger(__name__)
T = TypeVar("T")

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

    async def missing(self, execution_ids: list[str]) -> list[str]:
        """The given executions that have no entry in the queue (neither waiting nor taken and
        not yet acknowledged)."""
        ...

    def subscribe(self, execution_id: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> None:
        """Raises unless the queue can be consumed now (Redis answers and the consumer group
        exists or was just recreated)."""
        ...

    async def close(self) -> None: ...


class MemoryWorkQueue:
    """One process: an asyncio queue and in-memory event fan-out."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._seq = 0
        # execution id -> entries waiting; an entry taken and not acknowledged is lost with the
        # process anyway (nothing reclaims it), so it no longer counts.
        self._waiting: dict[str, int] = defaultdict(int)

    async def enqueue(self, execution_id: str) -> None:
        self._waiting[execution_id] += 1
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
            self._waiting[e] -= 1
            if self._waiting[e] <= 0:
                del self._waiting[e]
            msgs.append((str(self._seq), e))
        return msgs

    async def ack(self, message_id: str) -> None:
        return None

    async def missing(self, execution_ids: list[str]) -> list[str]:
        return [e for e in execution_ids if e not in self._waiting]

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


# Adds an entry and indexes it (execution id -> message id) in one step, so that the reconcile
# can tell which executions have an entry.
_ENQUEUE = """
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
"""

# Acknowledges and deletes an entry, and drops the index entry of its execution when it still
# names this message (a newer entry of the same execution keeps it). A missing group (Redis
# restarted) is no error: the entry went with it.
_ACK = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if entry[1] then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'e' and redis.call('HGET', KEYS[2], fields[i + 1]) == ARGV[2] then
      redis.call('HDEL', KEYS[2], fields[i + 1])
    end
  end
end
return 1
"""


@dataclass(frozen=True)
class RedisOptions:
    """Connection behaviour (see OrchestratorSettings.redis_*)."""

    health_check_interval_s: float = 5.0
    retries: int = 1
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 10.0


class RedisWorkQueue:
    """Work: stream ``<prefix>work`` read through consumer group ``workers``; an entry stays
    pending until acknowledged, and entries idle past the visibility timeout are reclaimed with
    XAUTOCLAIM. Hash ``<prefix>queued`` indexes the entries by execution (for the reconcile).
    Events: stream ``<prefix>events:<id>`` (capped, expiring), read with XREAD.

    A Redis restart (an empty server) is survived: a missing group (NOGROUP) is created again
    and the read retried; the reconcile re-queues what the database says is queued. Connections
    broken by the restart are replaced before use (PING after ``health_check_interval_s`` idle)
    and a command failing with a connection error is retried on a fresh connection."""

    GROUP = "workers"

    def __init__(
        self,
        url: str,
        prefix: str,
        consumer: str,
        events_ttl_s: int = 86400,
        options: RedisOptions | None = None,
    ) -> None:
        o = options or RedisOptions()
        self._r = aioredis.from_url(
            url,
            decode_responses=True,
            retry=Retry(NoBackoff(), o.retries),
            retry_on_error=[RedisConnectionError],
            health_check_interval=o.health_check_interval_s,
            socket_connect_timeout=o.connect_timeout_s,
            socket_timeout=o.socket_timeout_s,
        )
        self._work = f"{prefix}work"
        self._index = f"{prefix}queued"
        self._events = f"{prefix}events:"
        self._consumer = consumer
        self._ttl = events_ttl_s
        self._group_ready = False
        self._enqueue = self._r.register_script(_ENQUEUE)
        self._ack = self._r.register_script(_ACK)

    async def _ensure_group(self, *, check: bool = False) -> None:
        """Creates the stream and group unless known to exist (``check``: ask Redis anyway)."""
        if self._group_ready and not check:
            return
        try:
            await self._r.xgroup_create(self._work, self.GROUP, id="0", mkstream=True)
            log.info("work_queue.group_created", stream=self._work, group=self.GROUP)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _grouped(self, op: Callable[[], Awaitable[T]]) -> T:
        """Runs a consumer-group command; on NOGROUP (Redis lost the group: restarted empty, or
        flushed) creates the group again and retries once."""
        await self._ensure_group()
        try:
            return await op()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("work_queue.group_missing", stream=self._work, group=self.GROUP)
            self._group_ready = False
            await self._ensure_group()
            return await op()

    async def enqueue(self, execution_id: str) -> None:
        try:
            await self._enqueue(keys=[self._work, self._index], args=[execution_id])
        except RedisError as exc:
            raise QueueUnavailable(f"work queue unavailable: {exc}") from exc

    async def receive(self, count: int, block_s: float) -> list[Message]:
        block = max(1, int(block_s * 1000))

        async def read() -> Any:
            return await self._r.xreadgroup(
                self.GROUP, self._consumer, {self._work: ">"}, count=count, block=block
            )

        resp = await self._grouped(read)
        return [(mid, fields["e"]) for _, entries in resp or [] for mid, fields in entries]

    async def ack(self, message_id: str) -> None:
        await self._ack(keys=[self._work, self._index], args=[self.GROUP, message_id])

    async def reclaim(self, min_idle_s: float, count: int) -> list[Message]:
        async def claim() -> Any:
            return await self._r.xautoclaim(
                self._work,
                self.GROUP,
                self._consumer,
                min_idle_time=int(min_idle_s * 1000),
                start_id="0-0",
                count=count,
            )

        resp = await self._grouped(claim)
        entries = resp[1] if resp else []
        return [(mid, fields["e"]) for mid, fields in entries if fields]

    async def missing(self, execution_ids: list[str]) -> list[str]:
        if not execution_ids:
            return []
        try:
            found = await self._r.hmget(self._index, execution_ids)
        except RedisError as exc:
            raise QueueUnavailable(f"work queue unavailable: {exc}") from exc
        return [e for e, mid in zip(execution_ids, found, strict=True) if mid is None]

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
        """Redis answers and the consumer group exists (created again when it went missing)."""
        await self._r.ping()
        await self._ensure_group(check=True)

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
