"""Runs asynchronous executions on this replica: takes work from the queue, leases the execution in
the database, runs the pipeline (skipping nodes already recorded), renews the lease while it runs,
and finishes it once. A sweeper reclaims stale queue entries (XAUTOCLAIM) and reconciles the
database with the queue: executions nobody holds a live lease on that have no queue entry (crash
or Redis failure between commit and enqueue, a Redis restarted empty) are queued again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass

import structlog

from modelserve_orchestrator.domain import (
    EventType,
    ExecutionState,
    NodeResult,
    execution_caller,
)
from modelserve_orchestrator.finisher import Finisher, NodeRecorder
from modelserve_orchestrator.pipeline import NodeFailed, PipelineRunner
from modelserve_orchestrator.queue import WorkQueue
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.store_executions import ClaimedExecution

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    owner: str
    concurrency: int
    visibility_timeout_s: float
    claim_interval_s: float
    node_record_delay_s: float = 0.0
    reconcile_interval_s: float = 2.0
    reconcile_grace_s: float = 5.0
    reconcile_batch: int = 200


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
        self._receiver: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._handing_back = False
        self._active: set[str] = set()  # executions this replica is handling now

    def cancel_local(self, execution_id: str) -> None:
        task = self._running.get(execution_id)
        if task is not None:
            task.cancel()

    async def run(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop())
        self._receiver = asyncio.create_task(self._receive_loop())
        try:
            await asyncio.wait([self._receiver])
            await asyncio.Event().wait()  # handed back: idle until cancelled
        finally:
            self._receiver.cancel()
            self._sweeper.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(self._sweeper, self._receiver, *self._tasks, return_exceptions=True)

    async def hand_back(self, timeout_s: float) -> None:
        """Shutdown: stops taking work, interrupts the executions this replica runs, records
        their completed nodes and gives their leases back and re-queues them, so that another
        replica takes them at once rather than after the visibility timeout. Waits up to
        ``timeout_s`` for that."""
        self._handing_back = True
        for t in (self._receiver, self._sweeper):
            if t is not None:
                t.cancel()
        for run in list(self._running.values()):
            run.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _receive_loop(self) -> None:
        while True:
            # Wait for one free slot, take every other free one, and ask the queue for that
            # many entries in one round trip.
            await self._slots.acquire()
            taken = 1
            while taken < self._config.concurrency and not self._slots.locked():
                await self._slots.acquire()
                taken += 1
            try:
                msgs = await self._queue.receive(taken, 1.0)
            except Exception as exc:
                for _ in range(taken):
                    self._slots.release()
                log.warning("worker.receive_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            except asyncio.CancelledError:
                for _ in range(taken):
                    self._slots.release()
                raise
            for _ in range(taken - len(msgs)):
                self._slots.release()
            for mid, eid in msgs:
                self._start(mid, eid)

    def _start(self, message_id: str, execution_id: str) -> None:
        """Runs one queue entry in a slot the caller already holds."""
        t = asyncio.create_task(self._handle(message_id, execution_id))
        self._tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        self._slots.release()

    async def _sweep_loop(self) -> None:
        """Reclaims stale queue entries every ``claim_interval_s`` and reconciles the database
        with the queue every ``reconcile_interval_s``; a failure of one (Redis or the database
        down) neither stops the loop nor skips the other."""
        cfg = self._config
        next_claim = time.monotonic() + cfg.claim_interval_s
        next_reconcile = time.monotonic() + cfg.reconcile_interval_s
        while True:
            await asyncio.sleep(max(0.0, min(next_claim, next_reconcile) - time.monotonic()))
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + cfg.claim_interval_s
                try:
                    for mid, eid in await self._queue.reclaim(cfg.visibility_timeout_s, 32):
                        await self._slots.acquire()
                        self._start(mid, eid)
                except Exception as exc:
                    log.warning("worker.reclaim_failed", error=str(exc))
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + cfg.reconcile_interval_s
                try:
                    await self.reconcile()
                except Exception as exc:
                    log.warning("worker.reconcile_failed", error=str(exc))

    async def reconcile(self) -> int:
        """Queues again the executions the database says are waiting (QUEUED, or RUNNING with
        an expired lease) that were created or last queued more than ``reconcile_grace_s`` ago
        and have no queue entry: lost with Redis (restarted empty), never queued (the enqueue
        after the commit failed, or the process died in between). At most ``reconcile_batch``
        per pass. Returns how many it queued."""
        cfg = self._config
        now = time.time()
        candidates = await self._store.abandoned(now, now - cfg.reconcile_grace_s, cfg.reconcile_batch)
        lost = await self._queue.missing(candidates)
        queued = set(lost)
        await self._store.mark_checked([e for e in candidates if e not in queued], now)
        for eid in lost:
            await self._queue.enqueue(eid)
            await self._store.mark_enqueued(eid, time.time())
            log.info("execution.requeued", execution=eid)
        return len(lost)

    async def _handle(self, message_id: str, execution_id: str) -> None:
        if execution_id in self._active:
            # Our own entry, reclaimed (XAUTOCLAIM) because the execution runs longer than the
            # visibility timeout: it is running here; the running task acknowledges it.
            return
        self._active.add(execution_id)
        try:
            await self._handle_once(message_id, execution_id)
        finally:
            self._active.discard(execution_id)

    async def _handle_once(self, message_id: str, execution_id: str) -> None:
        ack = True
        try:
            now = time.time()
            vis = self._config.visibility_timeout_s
            claimed = await self._store.claim(execution_id, self._config.owner, now + vis, now)
            if claimed is not None:
                ack = await self._execute(claimed)
        except Exception as exc:
            ack = False  # database or Redis trouble: the entry stays pending and is reclaimed later
            log.warning("execution.handle_failed", execution=execution_id, error=str(exc))
        if ack:
            with contextlib.suppress(Exception):
                await self._queue.ack(message_id)

    async def _execute(self, claimed: ClaimedExecution) -> bool:
        """Runs a leased execution; True when the queue entry may be acknowledged."""
        ex, pipeline = claimed.execution, claimed.pipeline
        eid, owner = ex.id, self._config.owner
        await self._publish(eid, EventType.STARTED, ExecutionState.RUNNING)
        if pipeline is None:
            await self._finisher.finish(
                eid, ExecutionState.FAILED, {}, (), "pipeline version was deleted", owner, execution=ex
            )
            return True
        recorder = NodeRecorder(self._store, self._finisher, eid, self._config.node_record_delay_s)
        running = functools.partial(
            self._runner.run,
            pipeline,
            claimed.inputs,
            ex.parameters,
            on_node=recorder.add,
            done=claimed.done,
            caller=execution_caller(ex.tenant),  # runs as its stored tenant (ownership checked)
        )
        run = asyncio.create_task(self._runner.traced(ex.id, ex.pipeline, claimed.trace_context, running))
        self._running[eid] = run  # type: ignore[assignment]
        if self._handing_back:
            run.cancel()
        beat = asyncio.create_task(self._heartbeat(eid, run))
        try:
            result = await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                recorder.cancel()
                raise
            if self._handing_back:
                nodes = await recorder.drain()
                if await self._store.release(eid, owner, nodes, time.time()):
                    await self._queue.enqueue(eid)
                    log.info("execution.handed_back", execution=eid, nodes_recorded=len(nodes))
                return True
            recorder.cancel()
            log.info("execution.stopped", execution=eid, reason="cancelled or lease lost")
            return True
        except NodeFailed as nf:
            err = nf.as_service_error()
            await self._finisher.finish(
                eid,
                ExecutionState.FAILED,
                {},
                (),
                err.message,
                owner,
                execution=ex,
                pipeline=pipeline,
                nodes=await recorder.drain(),
            )
            return True
        finally:
            beat.cancel()
            self._running.pop(eid, None)
        await self._finisher.finish(
            eid,
            ExecutionState.SUCCEEDED,
            result.outputs,
            result.missing_outputs,
            "",
            owner,
            execution=ex,
            pipeline=pipeline,
            nodes=await recorder.drain(),
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
