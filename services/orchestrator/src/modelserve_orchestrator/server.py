"""Composition root of the orchestrator: database, work queue, model server client, runner,
worker, webhook dispatcher, service and servicer; SERVING while the database, Redis and the model
server answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from opentelemetry.sdk.trace import TracerProvider

from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from modelserve_common.migrations import SchemaTooNew, migrate
from modelserve_common.readiness import DependencyReadiness
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_orchestrator.clients import AliasResolvingCaller, InferenceClient, RegistryClient
from modelserve_orchestrator.db import Database, open_database
from modelserve_orchestrator.finisher import Finisher
from modelserve_orchestrator.metrics import MetricsSampler
from modelserve_orchestrator.migrations import SCHEMA
from modelserve_orchestrator.pipeline import ModelCaller, PipelineRunner
from modelserve_orchestrator.pipeline_checks import Defaults
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
from modelserve_orchestrator.worker import ExecutionWorker, WorkerConfig

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


def readiness_for(
    store: OrchestratorStore, queue: WorkQueue, client: InferenceClient, settings: OrchestratorSettings
) -> DependencyReadiness:
    """Readiness follows the dependencies: the database, the work queue (Redis answers and its
    consumer group exists or can be created again) and the model server (its grpc.health.v1
    Check). NOT_SERVING while one of them does not answer, SERVING again when all do."""

    async def database() -> None:
        await store.ping()

    async def redis() -> None:
        await queue.ping()

    async def model_server() -> str | None:
        return await client.health(settings.model_server_health_service, settings.dependency_check_timeout_s)

    return DependencyReadiness(
        "orchestrator",
        {"database": database, "redis": redis, "model server": model_server},
        interval_s=settings.dependency_check_interval_s,
        timeout_s=settings.dependency_check_timeout_s,
    )


def database_for(settings: OrchestratorSettings) -> Database:
    return open_database(
        settings.database_url_value(),
        settings.data_dir,
        min_size=settings.pool_min_size,
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
        tracer = tracer_provider.get_tracer("modelserve.orchestrator") if tracer_provider else None
        runner = PipelineRunner(caller, defaults, tracer)
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
        readiness = readiness_for(store, queue, client, settings)
        await readiness.update(running.health)
        background = [
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(MetricsSampler(db, settings.metrics_interval_s).run()),
            asyncio.create_task(readiness.follow(running.health)),
        ]
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
