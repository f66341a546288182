"""Runs asynchronous executions on this replica: takes work from the queue, leases the execution in
the database, runs the pipeline (skipping nodes already recorded), renews the lease while it runs,
and finishes it once. A sweeper re-queues executions nobody holds a live lease on (crash between
commit and enqueue, a dead replica, a lost Redis) and reclaims stale queue entries (XAUTOCLAIM)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from modelserve_orchestrator.domain import EventType, ExecutionState, NodeResult
from modelserve_orchestrator.pipeline import NodeFailed, PipelineRunner
from modelserve_orchestrator.queue import WorkQueue
from modelserve_orchestrator.store import NewDelivery, OrchestratorStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    owner: str
    concurrency: int
    visibility_timeout_s: float
    claim_interval_s: float


class ExecutionWorker:
    def __init__(
        self,
        store: OrchestratorStore,
        queue: WorkQueue,
        runner: PipelineRunner,
        config: WorkerConfig,
        finisher: Finisher,
    ) -> None:
        self._store = store
        self._queue = queue
        self._runner = runner
        self._config = config
        self._finisher = finisher
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def cancel_local(self, execution_id: str) -> None:
        task = self._running.get(execution_id)
        if task is not None:
            task.cancel()

    async def run(self) -> None:
        sweeper = asyncio.create_task(self._sweep_loop())
        try:
            while True:
                await self._slots.acquire()
                try:
                    msgs = await self._queue.receive(1, 1.0)
                except Exception as exc:
                    self._slots.release()
                    log.warning("worker.receive_failed", error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    self._slots.release()
                    continue
                for mid, eid in msgs:
                    t = asyncio.create_task(self._handle(mid, eid))
                    self._tasks.add(t)
                    t.add_done_callback(self._done)
        finally:
            sweeper.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(sweeper, *self._tasks, return_exceptions=True)

    def _done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        self._slots.release()

    async def _sweep_loop(self) -> None:
        vis = self._config.visibility_timeout_s
        while True:
            await asyncio.sleep(self._config.claim_interval_s)
            try:
                for mid, eid in await self._queue.reclaim(vis, 32):
                    await self._slots.acquire()
                    t = asyncio.create_task(self._handle(mid, eid))
                    self._tasks.add(t)
                    t.add_done_callback(self._done)
                now = time.time()
                for eid in await self._store.abandoned(now, now - vis, 100):
                    await self._queue.enqueue(eid)
                    await self._store.mark_enqueued(eid, now)
                    log.info("execution.requeued", execution=eid)
            except Exception as exc:
                log.warning("worker.sweep_failed", error=str(exc))

    async def _handle(self, message_id: str, execution_id: str) -> None:
        ack = True
        try:
            now = time.time()
            vis = self._config.visibility_timeout_s
            if await self._store.claim(execution_id, self._config.owner, now + vis, now):
                ack = await self._execute(execution_id)
        except Exception as exc:
            ack = False  # database or Redis trouble: the entry stays pending and is reclaimed later
            log.warning("execution.handle_failed", execution=execution_id, error=str(exc))
        if ack:
            with contextlib.suppress(Exception):
                await self._queue.ack(message_id)

    async def _execute(self, eid: str) -> bool:
        """Runs a leased execution; True when the queue entry may be acknowledged."""
        ex = await self._store.get_execution(eid, with_outputs=False)
        if ex is None:
            return True
        await self._publish(eid, EventType.STARTED, ExecutionState.RUNNING)
        pipeline = await self._store.get_pipeline(ex.pipeline, ex.pipeline_version)
        if pipeline is None:
            await self._finisher.finish(
                eid, ExecutionState.FAILED, {}, (), "pipeline version was deleted", self._config.owner
            )
            return True
        inputs, done = await self._store.run_data(eid)

        async def on_node(result: NodeResult) -> None:
            await self._store.record_node(eid, result, time.time())
            await self._publish(eid, EventType.NODE_COMPLETED, ExecutionState.RUNNING, result)

        run = asyncio.create_task(
            self._runner.run(pipeline, inputs, ex.parameters, on_node=on_node, done=done)
        )
        self._running[eid] = run  # type: ignore[assignment]
        beat = asyncio.create_task(self._heartbeat(eid, run))
        try:
            result = await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            log.info("execution.stopped", execution=eid, reason="cancelled or lease lost")
            return True
        except NodeFailed as nf:
            err = nf.as_service_error()
            await self._finisher.finish(eid, ExecutionState.FAILED, {}, (), err.message, self._config.owner)
            return True
        finally:
            beat.cancel()
            self._running.pop(eid, None)
        await self._finisher.finish(
            eid, ExecutionState.SUCCEEDED, result.outputs, result.missing_outputs, "", self._config.owner
        )
        return True

    async def _heartbeat(self, eid: str, run: asyncio.Task[object]) -> None:
        vis = self._config.visibility_timeout_s
        while not run.done():
            await asyncio.sleep(vis / 4)
            try:
                ok = await self._store.renew(eid, self._config.owner, time.time() + vis)
            except Exception as exc:
                log.warning("execution.renew_failed", execution=eid, error=str(exc))
                continue
            if not ok:
                run.cancel()
                return

    async def _publish(
        self, eid: str, kind: EventType, state: ExecutionState, result: NodeResult | None = None
    ) -> None:
        await self._finisher.publish(eid, kind, state, result)


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
    ) -> bool:
        deliveries = await self._deliveries.build(eid, state, error)
        ok = await self._store.finish(
            eid,
            state,
            outputs=outputs,
            missing=missing,
            error=error,
            now=time.time(),
            owner=owner,
            deliveries=deliveries,
        )
        if ok:
            log.info("execution.finished", execution=eid, state=state.name)
            with contextlib.suppress(Exception):
                await self.publish(eid, EventType.FINISHED, state)
            self.on_finished()
        return ok

    async def publish(
        self, eid: str, kind: EventType, state: ExecutionState, result: NodeResult | None = None
    ) -> None:
        from modelserve_orchestrator.domain import trace_to_dict

        event: dict[str, object] = {"type": int(kind), "state": int(state), "time": time.time()}
        if result is not None:
            event["node"] = trace_to_dict(result.trace)
        try:
            await self._queue.publish(eid, event)
        except Exception as exc:  # progress events may be lost; the database is the record
            log.warning("execution.publish_failed", execution=eid, error=str(exc))


class DeliveryBuilder:
    """The webhook deliveries of an execution's outcome: its own webhook and its pipeline's."""

    def __init__(self, store: OrchestratorStore) -> None:
        self._store = store

    async def build(self, eid: str, state: ExecutionState, error: str) -> list[NewDelivery]:
        import json

        from modelserve_orchestrator.domain import WebhookEvent

        ex = await self._store.get_execution(eid, with_outputs=False)
        if ex is None:
            return []
        event = {
            ExecutionState.SUCCEEDED: WebhookEvent.SUCCEEDED,
            ExecutionState.FAILED: WebhookEvent.FAILED,
            ExecutionState.CANCELLED: WebhookEvent.CANCELLED,
        }[state]
        pipeline = await self._store.get_pipeline(ex.pipeline, ex.pipeline_version)
        hooks = [ex.webhook, pipeline.webhook if pipeline else None]
        payload = json.dumps(
            {
                "type": f"execution.{event.name.lower()}",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "data": {
                    "execution": eid,
                    "pipeline": ex.pipeline,
                    "pipeline_version": ex.pipeline_version,
                    "state": state.name,
                    "error": error,
                },
            },
            separators=(",", ":"),
        )
        return [
            NewDelivery(f"msg_{eid}_{i}", w.url, w.secrets, event, payload)
            for i, w in enumerate(hooks)
            if w is not None and w.wants(event)
        ]
