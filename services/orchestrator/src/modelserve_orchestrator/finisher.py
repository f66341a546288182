"""Finishing executions and recording their progress: the terminal state (once, with its webhook
deliveries, in one transaction), node results written in groups while a pipeline runs, and the
progress events published on the queue. Used by the worker (worker.py) and CancelExecution."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from modelserve_orchestrator.domain import (
    EventType,
    Execution,
    ExecutionState,
    NodeResult,
    Pipeline,
    trace_to_dict,
)
from modelserve_orchestrator.queue import WorkQueue
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.store_executions import Completed
from modelserve_orchestrator.webhooks import DeliveryBuilder

log = structlog.get_logger(__name__)


class NodeRecorder:
    """Records an execution's node results without holding the pipeline up: a write starts
    ``delay_s`` after a result completes and takes every result completed by then (group
    commit); the ones still unwritten when the pipeline ends are recorded by the terminal
    transaction (``drain``), so a pipeline shorter than the delay writes its results once. A
    recorded result is never recomputed; one not yet recorded when the replica dies is computed
    again by the replica that takes the execution over."""

    def __init__(self, store: OrchestratorStore, finisher: Finisher, eid: str, delay_s: float) -> None:
        self._store = store
        self._finisher = finisher
        self._eid = eid
        self._delay_s = delay_s
        self._pending: list[Completed] = []
        self._writing: list[Completed] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, result: NodeResult) -> None:
        self._pending.append((result, time.time()))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)
        while self._pending:
            self._writing, self._pending = self._pending, []
            await self._store.record_nodes(self._eid, self._writing)
            written, self._writing = self._writing, []
            await self._finisher.publish_nodes(self._eid, [r for r, _ in written])

    async def drain(self) -> list[Completed]:
        """Waits for the write in flight (a write still waiting out its delay is dropped) and
        returns what is still unwritten (a failed write's results included: the terminal
        transaction records them, ignoring duplicates)."""
        if self._task is not None:
            if not self._writing:
                self._task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
        left, self._pending, self._writing = self._writing + self._pending, [], []
        return left

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Finisher:
    """Moves executions to their terminal state (once) with their webhook deliveries, and
    publishes progress events. Shared by the worker and CancelExecution."""

    def __init__(self, store: OrchestratorStore, queue: WorkQueue, deliveries: DeliveryBuilder) -> None:
        self._store = store
        self._queue = queue
        self._deliveries = deliveries
        self.on_finished: Callable[[], None] = lambda: None

    async def finish(
        self,
        eid: str,
        state: ExecutionState,
        outputs: Mapping[str, Any],
        missing: tuple[str, ...] | list[str],
        error: str,
        owner: str | None,
        *,
        execution: Execution | None = None,
        pipeline: Pipeline | None = None,
        nodes: Sequence[Completed] = (),
    ) -> bool:
        """``execution`` / ``pipeline``: what the caller already read (saves reading them
        again); ``nodes``: results to record in the terminal transaction."""
        deliveries = await self._deliveries.build(eid, state, error, execution, pipeline)
        ok = await self._store.finish(
            eid,
            state,
            outputs=outputs,
            missing=missing,
            error=error,
            now=time.time(),
            owner=owner,
            deliveries=deliveries,
            nodes=nodes,
        )
        if ok:
            log.info("execution.finished", execution=eid, state=state.name)
            events = [_event(EventType.NODE_COMPLETED, ExecutionState.RUNNING, r) for r, _ in nodes]
            events.append(_event(EventType.FINISHED, state))
            await self._publish_many(eid, events)
            self.on_finished()
        return ok

    async def publish(
        self, eid: str, kind: EventType, state: ExecutionState, result: NodeResult | None = None
    ) -> None:
        await self._publish_many(eid, [_event(kind, state, result)])

    async def publish_nodes(self, eid: str, results: Sequence[NodeResult]) -> None:
        await self._publish_many(
            eid, [_event(EventType.NODE_COMPLETED, ExecutionState.RUNNING, r) for r in results]
        )

    async def _publish_many(self, eid: str, events: list[dict[str, object]]) -> None:
        try:
            await self._queue.publish(eid, *events)
        except Exception as exc:  # progress events may be lost; the database is the record
            log.warning("execution.publish_failed", execution=eid, error=str(exc))


def _event(kind: EventType, state: ExecutionState, result: NodeResult | None = None) -> dict[str, object]:
    event: dict[str, object] = {"type": int(kind), "state": int(state), "time": time.time()}
    if result is not None:
        event["node"] = trace_to_dict(result.trace)
    return event
