"""Composition root of the orchestrator: database, work queue, model server client, runner,
worker, webhook dispatcher, service and servicer; SERVING while the database, Redis and the model
server answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from opentelemetry.sdk.trace import TracerProvider

from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from modelserve_common.db import SchemaTooNew, migrate
from modelserve_common.health import HealthReporter
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_orchestrator.clients import AliasResolvingCaller, InferenceClient, RegistryClient
from modelserve_orchestrator.db import Database, open_database
from modelserve_orchestrator.migrations import SCHEMA
from modelserve_orchestrator.pipeline import Defaults, ModelCaller, PipelineRunner
from modelserve_orchestrator.queue import MemoryWorkQueue, RedisOptions, RedisWorkQueue, WorkQueue
from modelserve_orchestrator.service import Limits, OrchestratorService
from modelserve_orchestrator.servicer import OrchestratorServicer
from modelserve_orchestrator.settings import OrchestratorSettings
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.webhooks import (
    AllowList,
    DeliveryBuilder,
    WebhookDispatcher,
    WebhookPolicy,
    WebhookSender,
)
from modelserve_orchestrator.worker import ExecutionWorker, Finisher, WorkerConfig

SERVICE_NAME = "modelserve.orchestrator.v1.OrchestratorService"
log = structlog.get_logger(__name__)


def _consumer_name(settings: OrchestratorSettings) -> str:
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def _wait_ready(store: OrchestratorStore, queue: WorkQueue, timeout_s: float) -> None:
    """Migrates and pings, retrying until the database and Redis answer."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                await migrate(store.db, SCHEMA)
                await queue.ping()
            return
        except SchemaTooNew:
            raise
        except Exception as exc:
            log.warning("orchestrator.dependencies_unavailable", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(0.5)


class Readiness:
    """Readiness follows the dependencies: the database, the work queue (Redis answers and its
    consumer group exists or can be created again) and the model server (its grpc.health.v1
    Check). NOT_SERVING while one of them does not answer, SERVING
    again when all do; transitions are logged once."""

    def __init__(
        self,
        store: OrchestratorStore,
        queue: WorkQueue,
        client: InferenceClient,
        health: HealthReporter,
        settings: OrchestratorSettings,
    ) -> None:
        self._store = store
        self._queue = queue
        self._client = client
        self._health = health
        self._settings = settings
        self.problems: list[str] = ["not checked yet"]

    async def _probe(self, what: str, check: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            async with asyncio.timeout(self._settings.dependency_check_timeout_s):
                return await check()
        except TimeoutError:
            return f"{what}: no answer within {self._settings.dependency_check_timeout_s}s"
        except Exception as exc:
            return f"{what}: {str(exc) or type(exc).__name__}"

    async def check(self) -> list[str]:
        """Checks every dependency at once; returns what is wrong (empty: ready)."""
        s = self._settings
        results = await asyncio.gather(
            self._probe("database", lambda: _none_after(self._store.ping)),
            self._probe("redis", lambda: _none_after(self._queue.ping)),
            self._probe(
                "model server",
                lambda: self._client.health(s.model_server_health_service, s.dependency_check_timeout_s),
            ),
        )
        return [r for r in results if r is not None]

    async def update(self) -> None:
        problems = await self.check()
        if not problems and (self.problems or not self._health.serving):
            log.info("orchestrator.ready")
            await self._health.set_serving()
        elif problems and problems != self.problems:
            log.warning("orchestrator.not_ready", problems=problems)
            await self._health.set_not_serving()
        self.problems = problems

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(self._settings.dependency_check_interval_s)
            await self.update()


async def _none_after(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def database_for(settings: OrchestratorSettings) -> Database:
    return open_database(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.data_dir,
        max_size=settings.pool_max_size,
        timeout_s=settings.db_timeout_s,
    )


async def migrate_only(settings: OrchestratorSettings) -> int:
    """Applies the pending migrations (under the migration lock) and returns the schema version.
    Used by `python -m modelserve_orchestrator migrate` (the Kubernetes migration Job). Waits up to
    ``db_timeout_s`` for the database; raises DatabaseUnavailable or SchemaTooNew."""
    db = database_for(settings)
    await db.open()
    try:
        return await migrate(db, SCHEMA)
    finally:
        await db.close()


@asynccontextmanager
async def running_server(
    settings: OrchestratorSettings,
    *,
    tracer_provider: TracerProvider | None = None,
    database: Database | None = None,
    caller: ModelCaller | None = None,
) -> AsyncIterator[RunningServer]:
    """Starts the orchestrator (API, execution worker, webhook dispatcher)."""
    async with AsyncExitStack() as stack:
        db = database or database_for(settings)
        with contextlib.suppress(Exception):
            await db.open()
        stack.push_async_callback(db.close)
        store = OrchestratorStore(db)
        owner = _consumer_name(settings)
        queue: WorkQueue = (
            RedisWorkQueue(
                settings.redis_url.get_secret_value(),
                settings.redis_prefix,
                owner,
                options=RedisOptions(
                    health_check_interval_s=settings.redis_health_check_interval_s,
                    retries=settings.redis_retries,
                    connect_timeout_s=settings.redis_connect_timeout_s,
                    socket_timeout_s=settings.redis_socket_timeout_s,
                ),
            )
            if settings.redis_url
            else MemoryWorkQueue()
        )
        stack.push_async_callback(queue.close)
        client = InferenceClient(settings, tracer_provider)
        stack.push_async_callback(client.close)
        if caller is None:
            caller = client
        if settings.registry_url:
            registry = RegistryClient(settings, tracer_provider)
            stack.push_async_callback(registry.close)
            caller = AliasResolvingCaller(caller, registry, settings.alias_cache_s)
        defaults = Defaults(
            timeout_s=settings.node_timeout_s,
            max_attempts=settings.node_max_attempts,
            initial_backoff_s=settings.node_initial_backoff_s,
            max_backoff_s=settings.node_max_backoff_s,
            max_nodes=settings.max_nodes,
        )
        runner = PipelineRunner(caller, defaults)
        policy = WebhookPolicy(
            settings.webhook_timeout_s,
            settings.webhook_max_attempts,
            settings.webhook_initial_backoff_s,
            settings.webhook_max_backoff_s,
            settings.webhook_poll_interval_s,
        )
        allow = AllowList(settings.webhook_allow)
        sender = WebhookSender(policy, allow)
        stack.push_async_callback(sender.close)
        dispatcher = WebhookDispatcher(store, sender, policy)
        finisher = Finisher(store, queue, DeliveryBuilder(store))
        finisher.on_finished = dispatcher.wake.set
        worker = None
        if settings.workers > 0:
            worker = ExecutionWorker(
                store,
                queue,
                runner,
                WorkerConfig(
                    owner,
                    settings.workers,
                    settings.visibility_timeout_s,
                    settings.claim_interval_s,
                    settings.node_record_delay_s,
                    settings.reconcile_interval_s,
                    settings.reconcile_grace_s,
                    settings.reconcile_batch,
                ),
                finisher,
            )
        service = OrchestratorService(
            store,
            queue,
            runner,
            finisher,
            defaults,
            allow,
            Limits(max_page_size=settings.max_page_size),
            worker,
        )
        servicer = OrchestratorServicer(service)
        services = [
            GrpcService(
                SERVICE_NAME, lambda s: svc_grpc.add_OrchestratorServiceServicer_to_server(servicer, s)
            )
        ]
        running = await stack.enter_async_context(
            grpc_server(settings, services, tracer_provider=tracer_provider)
        )
        await _wait_ready(store, queue, settings.db_timeout_s)
        readiness = Readiness(store, queue, client, running.health, settings)
        await readiness.update()
        background = [asyncio.create_task(dispatcher.run()), asyncio.create_task(readiness.follow())]
        if worker is not None:
            background.append(asyncio.create_task(worker.run()))

        async def stop_background() -> None:
            for t in background:
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)

        stack.push_async_callback(stop_background)
        if worker is not None:

            async def hand_back() -> None:
                await running.health.enter_graceful_shutdown()
                await worker.hand_back(settings.shutdown_grace_s)

            stack.push_async_callback(hand_back)
        running.extra["service"] = service
        running.extra["dispatcher"] = dispatcher
        yield running
