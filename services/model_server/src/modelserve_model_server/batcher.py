"""The per-model scheduler: a priority queue in front of the model's instances, with dynamic batching.

Rules (see README "Dynamic batching"):

* Idle model (nothing queued, an instance free): the request runs at once in the caller's own
  coroutine, so batching adds no latency at low load.
* Otherwise the request waits in its priority level's FIFO (level 1 is served first). Whenever an
  instance frees up, everything queued that fits is taken as one batch: up to ``max_batch_size`` rows,
  of requests whose non-batch shapes agree (others wait for the next batch), in arrival order.
* ``max_queue_delay_us`` only matters while another batch is running on a different instance: then a
  free instance waits up to that long for the queue to reach a preferred batch size (or
  ``max_batch_size``) before it takes a smaller batch.
* ``max_queue_size`` bounds the queue (full -> RESOURCE_EXHAUSTED at once); a request whose timeout
  expires in the queue fails DEADLINE_EXCEEDED and never runs; a request whose caller went away
  (cancelled) is removed and never runs.
* A request whose gRPC deadline has passed, or whose caller went away, is never started: it is
  checked when it would start (also in the gap between being taken into a batch and the batch
  running) and dropped (DEADLINE_EXCEEDED, or the caller's own cancellation), counted in
  ``modelserve_model_server_dropped_total`` and in the statistics' fail count.
* An instance stays busy until the model's work on it has stopped: a cancelled request whose
  predict runs in a thread keeps its instance (and its batcher slot) until the thread returns.
* An exception raised by the model's own code names the model: ValueError/TypeError (a rejected
  input, e.g. UnicodeDecodeError) are INVALID_ARGUMENT, anything else INTERNAL (errors.model_error).
* Without dynamic batching every request runs on its own (queueing, priorities and timeouts still
  apply).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import structlog
from opentelemetry import trace

from modelserve_common.errors import InvalidArgument
from modelserve_model_server.backend import LoadedModel, Tensors
from modelserve_model_server.batch_items import (
    DONE,
    QUEUED,
    RUNNING,
    Item,
    clock_ns,
    failure,
    merge,
    split,
    trace_batch,
)
from modelserve_model_server.codec import Decoded
from modelserve_model_server.config import ModelSpec
from modelserve_model_server.errors import (
    ModelNotReady,
    QueueFull,
    QueueTimeout,
    RequestExpired,
)
from modelserve_model_server.stats import ModelStats

log = structlog.get_logger(__name__)


class Scheduler:
    """Queue, batcher and instance pool of one model version."""

    def __init__(
        self, spec: ModelSpec, version: str, model: LoadedModel, stats: ModelStats, tracer: Any = None
    ):
        b = spec.batching
        self._name = spec.name
        self._version = version
        self._model = model
        self._stats = stats
        self._tracer = tracer
        self._dynamic = b.dynamic
        self._max_rows = spec.max_batch_size
        self._preferred = frozenset(b.preferred_batch_sizes)
        self._target = max(b.preferred_batch_sizes, default=spec.max_batch_size)
        self._delay_ns = b.max_queue_delay_us * 1000
        self._max_queue = b.max_queue_size
        self._levels: list[deque[Item]] = [deque() for _ in range(b.priority_levels)]
        self._default_priority = b.default_priority
        self._default_timeout_us = b.default_timeout_us
        self._allow_override = b.allow_timeout_override
        self._all_outputs = tuple(t.name for t in spec.outputs)
        self._free = spec.instance_count
        self._depth = 0
        self._rows = 0
        self._running = 0
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        stats.queue_depth.set_function(lambda: self._depth)
        stats.in_flight.set_function(lambda: self._in_flight)

    @property
    def depth(self) -> int:
        """Requests waiting in the queue."""
        return self._depth

    # -- submitting ---------------------------------------------------------------------------

    def _level(self, priority: int) -> int:
        if priority == 0:
            return self._default_priority
        if priority < 0 or priority > len(self._levels):
            raise InvalidArgument(
                f"priority {priority} is out of range; model {self._name!r} has levels 1..{len(self._levels)}"
            )
        return priority

    def _timeout_us(self, requested: int | None) -> int:
        if requested is not None and requested > 0 and self._allow_override:
            return requested
        return self._default_timeout_us

    async def submit(
        self,
        decoded: Decoded,
        priority: int = 0,
        timeout_us: int | None = None,
        deadline_s: float | None = None,
    ) -> Tensors:
        """Runs ``decoded`` (alone or in a batch) and returns its own outputs. ``deadline_s`` is
        the caller's remaining time (its gRPC deadline): a request still queued when it passes is
        dropped, never started."""
        if self._closed:
            raise ModelNotReady(f"model {self._name!r} version {self._version} is unloading")
        level = self._level(priority)
        now = clock_ns()
        deadline = 0
        if deadline_s is not None:
            if deadline_s <= 0:
                self._stats.dropped("deadline")
                raise self._expired()
            deadline = now + max(int(deadline_s * 1e9), 1)
        item = Item(decoded, now, deadline)
        if self._tracer is not None:
            current = trace.get_current_span()
            if current.is_recording():  # sampled: an unsampled request costs no spans here
                item.parent = current
        self._in_flight += 1
        self._idle.clear()
        try:
            if self._depth == 0 and self._free > 0:
                self._free -= 1
                self._running += 1
                await self._execute([item])
                if item.error is not None:
                    raise item.error
                assert item.result is not None
                return item.result
            if self._max_queue and self._depth >= self._max_queue:
                raise QueueFull(
                    f"model {self._name!r} version {self._version}: queue is full "
                    f"({self._depth} of max_queue_size {self._max_queue} requests waiting)"
                )
            return await self._enqueue(item, level, self._timeout_us(timeout_us))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _enqueue(self, item: Item, level: int, timeout_us: int) -> Tensors:
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        if self._tracer is not None and item.parent is not None:
            item.span = self._tracer.start_span(
                "model.queue", attributes={"model": self._name, "version": self._version, "priority": level}
            )
        self._levels[level - 1].append(item)
        self._depth += 1
        self._rows += item.decoded.rows
        if timeout_us:
            item.handle = loop.call_later(timeout_us / 1e6, self._expire, item, timeout_us)
        self._pump()
        try:
            return await item.future
        except asyncio.CancelledError:
            if item.state == QUEUED:  # the caller went away while queued: never run it
                self._remove(item)
                self._stats.dropped("cancelled")
            raise

    def _remove(self, item: Item) -> None:
        item.state = DONE
        self._depth -= 1
        self._rows -= item.decoded.rows
        if item.handle is not None:
            item.handle.cancel()
        if item.span is not None:
            item.span.end()

    def _expired(self) -> RequestExpired:
        return RequestExpired(
            f"the deadline of the request to model {self._name!r} passed before it started; it was not run"
        )

    def _dead(self, item: Item, now: int) -> bool:
        """Whether ``item`` must not start: its caller went away (its future was cancelled, which
        happens at once when the caller's task is cancelled, before that task runs again) or its
        deadline passed. A dead item is failed and counted here."""
        fut = item.future
        if fut is not None and fut.done():
            self._stats.dropped("cancelled")
            return True
        if item.deadline and now >= item.deadline:
            self._stats.dropped("deadline")
            if fut is not None:
                fut.set_exception(self._expired())
            else:
                item.error = self._expired()
            return True
        return False

    def _expire(self, item: Item, timeout_us: int) -> None:
        if item.state != QUEUED:
            return
        self._remove(item)
        self._stats.dropped("queue_timeout")
        if item.future is not None and not item.future.done():
            item.future.set_exception(
                QueueTimeout(
                    f"request timed out after {timeout_us} us in the queue of model {self._name!r}; "
                    "it was not run"
                )
            )

    # -- batching -----------------------------------------------------------------------------

    def _pump(self) -> None:
        while self._free > 0 and self._depth > 0:
            if self._should_wait():
                return
            batch = self._take()
            if not batch:
                return
            self._free -= 1
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _head(self) -> Item | None:
        now = clock_ns()
        for level in self._levels:
            while level:
                item = level[0]
                if item.state == QUEUED:
                    if not self._dead(item, now):
                        return item
                    self._remove(item)
                level.popleft()
        return None

    def _should_wait(self) -> bool:
        if not self._dynamic or self._delay_ns == 0 or self._running == 0:
            return False
        if self._rows >= self._target or self._rows in self._preferred:
            return False
        head = self._head()
        if head is None:
            return False
        due = head.enqueued + self._delay_ns
        now = clock_ns()
        if now >= due:
            return False
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later((due - now) / 1e9, self._on_timer)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _take(self) -> list[Item]:
        batch: list[Item] = []
        rows = 0
        signature: tuple[object, ...] = ()
        now = clock_ns()
        for level in self._levels:
            while level:
                item = level[0]
                if item.state != QUEUED:
                    level.popleft()
                    continue
                if self._dead(item, now):
                    level.popleft()
                    self._remove(item)
                    continue
                d = item.decoded
                if batch and (d.signature != signature or rows + d.rows > self._max_rows):
                    return batch
                level.popleft()
                self._remove(item)
                item.state = RUNNING
                batch.append(item)
                rows += d.rows
                signature = d.signature
                if not self._dynamic or rows >= self._max_rows:
                    return batch
        return batch

    async def _execute(self, batch: list[Item]) -> None:
        t0 = clock_ns()
        span = None
        try:
            if batch[0].future is not None:  # taken from the queue: the caller may have left since
                batch = self._live(batch, t0)
                if not batch:
                    return
            queued = self._stats.queued
            for item in batch:
                queued(t0 - item.enqueued)
            if self._tracer is not None:
                span = trace_batch(self._tracer, self._name, self._version, batch, t0)
            results = await self._compute(batch, t0)
            for item, result in zip(batch, results, strict=True):
                self._deliver(item, result, None)
        except BaseException as exc:
            err = failure(self._name, self._version, exc)
            for item in batch:
                self._deliver(item, None, err)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if span is not None:
                span.end()
            self._free += 1
            self._running -= 1
            if self._depth:
                self._pump()

    def _live(self, batch: list[Item], now: int) -> list[Item]:
        """The items of ``batch`` whose callers still wait; the others are marked done."""
        live = [item for item in batch if not self._dead(item, now)]
        if len(live) != len(batch):
            for item in batch:
                if item not in live:
                    item.state = DONE
        return live

    async def _compute(self, batch: list[Item], t0: int) -> list[Tensors]:
        """Runs the model on ``batch`` (merged when more than one) and records the phase timings."""
        if len(batch) == 1:
            d = batch[0].decoded
            rows = d.rows
            out = await self._model.execute(d.inputs, d.outputs or self._all_outputs)
            t0_in = t0
            t1 = t2 = clock_ns()
            results = [out]
        else:
            inputs, names, rows = merge(batch, self._all_outputs)
            t0_in = clock_ns()
            out = await self._model.execute(inputs, names)
            t1 = clock_ns()
            results = split(batch, out, names, rows)
            t2 = clock_ns()
        self._stats.ran(len(batch), rows, t0_in - t0, t1 - t0_in, t2 - t1)
        return results

    def _deliver(self, item: Item, result: Tensors | None, error: BaseException | None) -> None:
        item.state = DONE
        fut = item.future
        if fut is None:
            item.result, item.error = result, error
        elif not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)  # type: ignore[arg-type]

    # -- lifecycle ----------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Stops taking requests and waits (up to ``timeout_s``) for queued and running ones."""
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("model.drain_timeout", model=self._name, version=self._version, queued=self._depth)
        if self._timer is not None:
            self._timer.cancel()
        for level in self._levels:
            while level:
                item = level.popleft()
                if item.state == QUEUED:
                    self._remove(item)
                    if item.future is not None and not item.future.done():
                        item.future.set_exception(ModelNotReady(f"model {self._name!r} was unloaded"))
