"""The orchestrator's use-cases: pipelines, synchronous and streamed runs, asynchronous
executions (idempotent creation, cancel, watch) and webhook deliveries."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from modelserve_common.errors import InvalidArgument
from modelserve_common.identity import Caller
from modelserve_common.tracing import current_carrier
from modelserve_orchestrator import tensors
from modelserve_orchestrator.domain import (
    EventType,
    Execution,
    ExecutionEvent,
    ExecutionState,
    NodeResult,
    Pipeline,
    RunRequest,
    RunResult,
    Webhook,
    WebhookDelivery,
    trace_from_dict,
)
from modelserve_orchestrator.errors import ExecutionNotFound, PipelineNotFound
from modelserve_orchestrator.finisher import Finisher
from modelserve_orchestrator.pipeline import NodeFailed, PipelineRunner
from modelserve_orchestrator.pipeline_checks import Defaults, check_inputs, validate
from modelserve_orchestrator.queue import WorkQueue
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.webhooks import AllowList, check_destination
from modelserve_orchestrator.worker import ExecutionWorker

MAX_KEY = 255
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Limits:
    max_page_size: int = 1000
    watch_poll_s: float = 1.0


def _page(page_size: int, limits: Limits) -> int:
    if page_size < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {page_size}")
    return min(page_size or 50, limits.max_page_size)


class OrchestratorService:
    def __init__(
        self,
        store: OrchestratorStore,
        queue: WorkQueue,
        runner: PipelineRunner,
        finisher: Finisher,
        defaults: Defaults,
        allow: AllowList,
        limits: Limits,
        worker: ExecutionWorker | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._runner = runner
        self._finisher = finisher
        self._defaults = defaults
        self._allow = allow
        self._limits = limits
        self._worker = worker

    # pipelines -----------------------------------------------------------------------------

    async def _check_webhook(self, w: Webhook | None) -> None:
        if w is not None:
            await check_destination(w.url, self._allow)

    async def put_pipeline(self, p: Pipeline, *, new: bool, caller: Caller) -> Pipeline:
        """Creates or updates; a tenant's pipeline may name only models the tenant may use (its
        own, shared ones): NOT_FOUND naming the node otherwise, as for a missing model."""
        validate(p, self._defaults)
        await self._check_webhook(p.webhook)
        try:
            await self._runner.check_models(p, caller)
        except NodeFailed as nf:
            raise nf.as_service_error() from None
        return await self._store.put_pipeline(
            p, new=new, now=time.time(), owner=caller.owner, visible=caller.visible
        )

    async def get_pipeline(self, name: str, version: int, caller: Caller) -> Pipeline:
        """The pipeline; another tenant's answers NOT_FOUND exactly like a missing one."""
        p = await self._store.get_pipeline(name, version, tenant=caller.visible)
        if p is None:
            what = f"pipeline {name!r}" + (f" version {version}" if version else "")
            raise PipelineNotFound(f"{what} not found")
        return p

    async def list_pipelines(self, page_size: int, token: str, caller: Caller) -> tuple[list[Pipeline], str]:
        limit = _page(page_size, self._limits)
        items = await self._store.list_pipelines(token, limit, tenant=caller.visible)
        return items, items[-1].name if len(items) == limit else ""

    async def delete_pipeline(self, name: str, caller: Caller) -> None:
        if not await self._store.delete_pipeline(name, tenant=caller.visible):
            raise PipelineNotFound(f"pipeline {name!r} not found")

    # synchronous runs ----------------------------------------------------------------------

    async def run(self, req: RunRequest, caller: Caller) -> RunResult:
        p = await self.get_pipeline(req.pipeline, req.version, caller)
        check_inputs(p, req.inputs)
        try:
            return await self._runner.run(p, req.inputs, req.parameters, caller=caller)
        except NodeFailed as nf:
            raise nf.as_service_error() from None

    async def stream(self, req: RunRequest, caller: Caller) -> AsyncIterator[NodeResult | RunResult]:
        p = await self.get_pipeline(req.pipeline, req.version, caller)
        check_inputs(p, req.inputs)
        q: asyncio.Queue[NodeResult] = asyncio.Queue()

        async def on_node(r: NodeResult) -> None:
            q.put_nowait(r)

        task = asyncio.create_task(
            self._runner.run(p, req.inputs, req.parameters, on_node=on_node, caller=caller)
        )
        try:
            while not task.done() or not q.empty():
                getter = asyncio.ensure_future(q.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            try:
                result = task.result()
            except NodeFailed as nf:
                raise nf.as_service_error() from None
            yield result
        finally:
            task.cancel()

    # executions ----------------------------------------------------------------------------

    async def create_execution(
        self, req: RunRequest, idempotency_key: str, webhook: Webhook | None, caller: Caller
    ) -> tuple[Execution, bool]:
        if len(idempotency_key) > MAX_KEY or not idempotency_key.isprintable():
            raise InvalidArgument(
                f"idempotency_key must be at most {MAX_KEY} printable characters, got {len(idempotency_key)}"
            )
        p = await self.get_pipeline(req.pipeline, req.version, caller)
        check_inputs(p, req.inputs)
        await self._check_webhook(webhook)
        inputs_text = tensors.dumps(dict(sorted(req.inputs.items())))
        digest = hashlib.sha256(
            json.dumps(
                [
                    req.pipeline,
                    req.version,
                    inputs_text,
                    sorted(req.parameters.items()),
                    [webhook.url, list(webhook.secrets), [int(e) for e in webhook.events]]
                    if webhook
                    else None,
                ]
            ).encode()
        ).hexdigest()
        now = time.time()
        ex = Execution(
            id=uuid.uuid4().hex,
            pipeline=p.name,
            pipeline_version=p.version,
            state=ExecutionState.QUEUED,
            parameters=dict(req.parameters),
            idempotency_key=idempotency_key,
            webhook=webhook,
            create_time=now,
        )
        stored, replayed = await self._store.create_execution(
            ex, inputs_text, digest, tenant=caller.owner, trace_context=current_carrier()
        )
        if not replayed:
            # The row is committed: from here on the call succeeds (a client retrying an error
            # without an idempotency key would create a duplicate). If the enqueue fails (or the
            # process dies here) the reconcile queues the execution once it is older than
            # ORCHESTRATOR_RECONCILE_GRACE_S.
            try:
                await self._queue.enqueue(stored.id)
            except Exception as exc:
                log.warning("execution.enqueue_deferred", execution=stored.id, error=str(exc))
        return stored, replayed

    async def get_execution(self, eid: str, caller: Caller) -> Execution:
        """The execution; another tenant's answers NOT_FOUND exactly like a missing one."""
        ex = await self._store.get_execution(eid, tenant=caller.visible)
        if ex is None:
            raise ExecutionNotFound(f"execution {eid!r} not found")
        return ex

    async def list_executions(
        self, pipeline: str, state: ExecutionState, page_size: int, token: str, caller: Caller
    ) -> tuple[list[Execution], str]:
        limit = _page(page_size, self._limits)
        after: tuple[float, str] | None = None
        if token:
            try:
                ts, _, eid = token.partition("/")
                after = (float(ts), eid)
            except ValueError:
                raise InvalidArgument(f"page_token {token!r} is not a token this server issued") from None
        items = await self._store.list_executions(pipeline, state, after, limit, tenant=caller.visible)
        nxt = f"{items[-1].create_time!r}/{items[-1].id}" if len(items) == limit else ""
        return items, nxt

    async def cancel_execution(self, eid: str, reason: str, caller: Caller) -> Execution:
        ex = await self.get_execution(eid, caller)
        if not ex.state.terminal:
            await self._finisher.finish(
                eid, ExecutionState.CANCELLED, {}, (), f"cancelled: {reason}" if reason else "cancelled", None
            )
            if self._worker is not None:
                self._worker.cancel_local(eid)
        return await self.get_execution(eid, caller)

    async def watch(self, eid: str, caller: Caller) -> AsyncIterator[ExecutionEvent]:
        await self.get_execution(eid, caller)
        async with self._queue.subscribe(eid) as sub:
            ex = await self.get_execution(eid, caller)
            yield ExecutionEvent(EventType.SNAPSHOT, ex.state, time.time(), execution=ex)
            if ex.state.terminal:
                return
            while True:
                raw = await sub.next(self._limits.watch_poll_s)
                if raw is None or raw["type"] == EventType.FINISHED:
                    state = await self._store.execution_state(eid)
                    if state is not None and state.terminal:
                        final = await self.get_execution(eid, caller)
                        yield ExecutionEvent(EventType.FINISHED, final.state, time.time(), execution=final)
                        return
                    continue
                node = trace_from_dict(raw["node"]) if raw.get("node") else None
                yield ExecutionEvent(
                    EventType(raw["type"]), ExecutionState(raw["state"]), raw["time"], node=node
                )

    async def list_deliveries(self, eid: str, caller: Caller) -> list[WebhookDelivery]:
        await self.get_execution(eid, caller)
        return await self._store.list_deliveries(eid)
