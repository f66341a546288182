"""Composition root of the registry: database, migrations, service, servicer, readiness."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from opentelemetry.sdk.trace import TracerProvider

from modelserve.registry.v1 import registry_service_pb2_grpc as svc_grpc
from modelserve_common.artifact_store import ArtifactStore, artifact_store
from modelserve_common.errors import ServiceError
from modelserve_common.health import HealthReporter
from modelserve_common.migrations import SchemaTooNew, migrate
from modelserve_common.readiness import DependencyReadiness
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_registry.artifacts import ArtifactLimits
from modelserve_registry.core import Limits
from modelserve_registry.db import Database, DatabaseUnavailable, open_database
from modelserve_registry.migrations import SCHEMA
from modelserve_registry.prediction_logs import PredictionLimits
from modelserve_registry.s3_refs import S3References, parse_allowed
from modelserve_registry.service import RegistryService
from modelserve_registry.servicer import RegistryServicer
from modelserve_registry.settings import RegistrySettings
from modelserve_registry.store import RegistryStore

SERVICE_NAME = "modelserve.registry.v1.RegistryService"
log = structlog.get_logger(__name__)


def database_for(settings: RegistrySettings) -> Database:
    return open_database(
        settings.database_url_value(),
        settings.data_dir,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout_s=settings.db_timeout_s,
    )


def readiness_for(store: RegistryStore, settings: RegistrySettings) -> DependencyReadiness:
    """Readiness follows the database: NOT_SERVING while it is down, SERVING when it answers and
    migrations are applied (retried on every check until they are); the registry recovers by
    itself. A check may take db_check_timeout_s (db_timeout_s while migrations are not applied).
    SchemaTooNew propagates. An RPC that meets an outage turns readiness off at once (on_outage)."""
    migrated = False

    async def database() -> None:
        nonlocal migrated
        if not migrated:
            await migrate(store.db, SCHEMA)
            migrated = True
        await store.ping()

    def timeout_s() -> float:
        if migrated:
            return settings.db_check_timeout_s
        return max(settings.db_timeout_s, settings.db_check_timeout_s)

    return DependencyReadiness(
        "registry",
        {"database": database},
        interval_s=settings.db_check_interval_s,
        timeout_s=timeout_s,
        fatal=(SchemaTooNew,),
    )


async def _sweep_blobs(
    service: RegistryService, artifacts: ArtifactStore, settings: RegistrySettings
) -> None:
    """Every blob_sweep_interval_s: unreferenced blobs past their grace, then stale temporary
    uploads. A failure (database or store down) is logged and retried at the next round."""
    while True:
        await asyncio.sleep(settings.blob_sweep_interval_s)
        try:
            await service.sweep_blobs()
            await artifacts.sweep_temporary(settings.artifacts.temporary_timeout_s)
        except (ServiceError, DatabaseUnavailable) as exc:
            log.warning("blobs.sweep_failed", error=str(exc))


async def _prediction_upkeep(service: RegistryService, settings: RegistrySettings) -> None:
    """Every prediction_log_sweep_interval_s: expired prediction logs deleted, drift gauge
    refreshed. A failure is logged and retried at the next round."""
    while True:
        await asyncio.sleep(settings.prediction_log_sweep_interval_s)
        try:
            await service.sweep_prediction_logs()
            await service.refresh_drift_metrics()
        except (ServiceError, DatabaseUnavailable) as exc:
            log.warning("prediction_logs.upkeep_failed", error=str(exc))


def prediction_limits(settings: RegistrySettings) -> PredictionLimits:
    return PredictionLimits(
        max_batch=settings.prediction_log_max_batch,
        max_record_bytes=settings.prediction_log_max_record_bytes,
        retention_s=settings.prediction_log_retention_s,
        sweep_batch=settings.prediction_log_sweep_batch,
        drift_window_s=settings.drift_window_s,
        max_drift_window_s=settings.drift_max_window_s,
        drift_max_records=settings.drift_max_records,
        drift_max_features=settings.drift_max_features,
        drift_bins=settings.drift_bins,
    )


@asynccontextmanager
async def running_server(
    settings: RegistrySettings,
    *,
    tracer_provider: TracerProvider | None = None,
    database: Database | None = None,
) -> AsyncIterator[RunningServer]:
    """Starts the registry. It serves as soon as the database answers and migrations are applied;
    while the database is down, readiness is NOT_SERVING and RPCs answer UNAVAILABLE. A database
    schema newer than this registry knows stops the start (SchemaTooNew)."""
    db = database or database_for(settings)
    health_ref: list[HealthReporter] = []

    async def on_outage() -> None:
        """A database call failed with an outage: readiness off now (the follower turns it back
        on when a check succeeds)."""
        if health_ref and health_ref[0].serving:
            log.warning("registry.database_unavailable", source="rpc")
            await health_ref[0].set_not_serving()

    store = RegistryStore(db, change_retention=settings.change_retention, on_outage=on_outage)
    limits = Limits(
        max_page_size=settings.max_page_size,
        max_tags=settings.max_tags,
        max_text_bytes=settings.max_text_bytes,
        key_grace_period_s=settings.key_grace_period_s,
        max_key_rotation_grace_s=settings.max_key_rotation_grace_s,
        artifact_roots=settings.artifact_root_paths(),
        s3_allowed=parse_allowed(settings.artifact_s3_allowed),
        watch_poll_interval_s=settings.watch_poll_interval_s,
        watch_progress_interval_s=settings.watch_progress_interval_s,
    )
    service = RegistryService(store, limits)
    artifacts = artifact_store(settings.artifacts, settings.data_dir)
    service.use_artifact_store(
        artifacts,
        ArtifactLimits(
            max_artifact_bytes=settings.max_artifact_bytes,
            tenant_storage_quota_bytes=settings.tenant_storage_quota_bytes,
            upload_idle_timeout_s=settings.upload_idle_timeout_s,
            blob_grace_s=settings.blob_grace_s,
            max_signature_bytes=settings.max_signature_bytes,
            max_concurrent_signature_reads=settings.max_concurrent_signature_reads,
        ),
        S3References(settings.artifacts.s3, limits.s3_allowed),
    )
    service.use_prediction_logs(prediction_limits(settings))
    servicer = RegistryServicer(service)
    services = [
        GrpcService(SERVICE_NAME, lambda s: svc_grpc.add_RegistryServiceServicer_to_server(servicer, s))
    ]
    with contextlib.suppress(DatabaseUnavailable):
        await db.open()
    try:
        readiness = readiness_for(store, settings)
        readiness.problems = await readiness.check(
            max(settings.db_timeout_s, 2 * settings.db_check_interval_s)
        )
        if readiness.problems:
            log.warning("registry.not_ready", problems=readiness.problems)
        async with grpc_server(settings, services, tracer_provider=tracer_provider) as running:
            health_ref.append(running.health)
            if not readiness.problems:
                await running.health.set_serving()
            follower = asyncio.create_task(readiness.follow(running.health))
            sweeper = asyncio.create_task(_sweep_blobs(service, artifacts, settings))
            upkeep = asyncio.create_task(_prediction_upkeep(service, settings))
            running.extra["service"] = service
            try:
                yield running
            finally:
                follower.cancel()
                sweeper.cancel()
                upkeep.cancel()
                for task in (follower, sweeper, upkeep):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        await db.close()


async def migrate_only(settings: RegistrySettings) -> int:
    """Applies pending migrations (under the migration lock) and returns the schema version.
    Used by `python -m modelserve_registry migrate` (the Kubernetes migration Job)."""
    db = database_for(settings)
    await db.open()
    try:
        return await migrate(db, SCHEMA)
    finally:
        await db.close()
