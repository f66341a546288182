"""Migrations, transactions and outages against real databases: numbered migrations under a
lock, the newer-schema guard, no partial writes when the database dies mid-transaction, readiness
and UNAVAILABLE during an outage, recovery without a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.migrations import Migration, SchemaTooNew, migrate
from modelserve_common.testing.databases import ThrowawayPostgres
from modelserve_registry.db import Database, DatabaseUnavailable, open_database
from modelserve_registry.domain import Model, ModelVersion
from modelserve_registry.migrations import LATEST, MIGRATIONS, SCHEMA
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings
from modelserve_registry.store import RegistryStore, now_us

pytestmark = pytest.mark.integration

SHA = "b" * 64


def _db(url: str, tmp: Path) -> Database:
    return open_database(url, tmp, min_size=0, max_size=4, timeout_s=2.0)


def _settings(url: str, tmp: Path) -> RegistrySettings:
    return RegistrySettings(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        database_url=url,
        data_dir=tmp,
        db_check_interval_s=0.2,
        db_timeout_s=1.0,
        shutdown_grace_s=0.5,
        access_log=False,
    )


async def _schema_version(db: Database) -> int:
    async with db.transaction(write=False) as tx:
        row = await tx.fetchone("SELECT MAX(version) FROM schema_migrations")
    return int(row[0]) if row and row[0] is not None else 0


async def test_migrate_concurrent_starters_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    dbs = [_db(database_url, tmp_path) for _ in range(3)]
    for db in dbs:
        await db.open()
    try:
        versions = await asyncio.gather(*(migrate(db, SCHEMA) for db in dbs))
        assert versions == [LATEST] * 3
        async with dbs[0].transaction(write=False) as tx:
            rows = await tx.fetch("SELECT version FROM schema_migrations ORDER BY version")
            default = await tx.fetchone("SELECT COUNT(*) FROM tenants WHERE name = 'default'")
        assert [r[0] for r in rows] == [m.number for m in MIGRATIONS]
        assert default == (1,)
    finally:
        for db in dbs:
            await db.close()


async def test_failed_migration_leaves_schema_version_unchanged(database_url: str, tmp_path: Path) -> None:
    db = _db(database_url, tmp_path)
    await db.open()
    try:
        await migrate(db, SCHEMA)
        broken = (
            *MIGRATIONS,
            Migration(LATEST + 1, "broken", ("CREATE TABLE half_done (x INTEGER)", "NOT SQL")),
        )
        with pytest.raises((psycopg.Error, sqlite3.Error)):
            await migrate(db, dataclasses.replace(SCHEMA, migrations=broken))
        assert await _schema_version(db) == LATEST
        async with db.transaction(write=False) as tx:  # the first statement was rolled back too
            with pytest.raises((psycopg.Error, sqlite3.Error)):
                await tx.fetch("SELECT x FROM half_done")
    finally:
        await db.close()


async def test_server_refuses_newer_schema(database_url: str, tmp_path: Path) -> None:
    db = _db(database_url, tmp_path)
    await db.open()
    await migrate(db, SCHEMA)
    async with db.transaction(write=True) as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)", (LATEST + 1,)
        )
    await db.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1} is newer"):
        async with running_server(_settings(database_url, tmp_path)):
            pass


async def test_error_mid_transaction_leaves_no_partial_rows(database_url: str, tmp_path: Path) -> None:
    db = _db(database_url, tmp_path)
    await db.open()
    await migrate(db, SCHEMA)
    store = RegistryStore(db)
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction(write=True) as tx:
                m = Model(
                    name="half", tenant="default", tags={"a": "1"}, create_time=now_us(), update_time=now_us()
                )
                await tx.record("CREATED", "default", "half", m)
                await tx.insert_model(m)
                raise RuntimeError("crash between statements")
        async with store.transaction(write=False) as tx:
            assert await tx.get_model("half") is None
            assert await tx.revisions() == (0, 0)
    finally:
        await db.close()


async def test_database_killed_mid_transaction_no_partial_rows_then_recovers(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    db = _db(throwaway_postgres.url, tmp_path)
    await db.open()
    await migrate(db, SCHEMA)
    store = RegistryStore(db)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with store.transaction(write=True) as tx:
                m = Model(
                    name="half", tenant="default", tags={"a": "1"}, create_time=now_us(), update_time=now_us()
                )
                await tx.record("CREATED", "default", "half", m)
                await tx.insert_model(m)
                number = await tx.next_version_number("half")
                v = ModelVersion(
                    model="half",
                    version=number,
                    artifact_uri="file:///x",
                    artifact_sha256=SHA,
                    backend="onnx",
                )
                await tx.record("CREATED", "default", "half", v)
                await tx.insert_version(v)
                await asyncio.to_thread(throwaway_postgres.kill)  # dies before COMMIT
        await asyncio.to_thread(throwaway_postgres.start)
        async with store.transaction(write=False) as tx:
            assert await tx.get_model("half") is None
            assert await tx.get_version("half", 1) is None
            assert await tx.revisions() == (0, 0)
            assert await tx.changes_after(0, tenant=None, model=None, limit=10) == ([], 0)
    finally:
        await db.close()


async def _health(stub: health_pb2_grpc.HealthStub) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


async def _wait_health(stub: health_pb2_grpc.HealthStub, status: int, within: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < within:
        if await _health(stub) == status:
            return loop.time() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"health did not become {status} within {within}s")


async def test_outage_turns_readiness_off_answers_unavailable_and_recovers(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    async with running_server(_settings(throwaway_postgres.url, tmp_path)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            registry = registry_grpc.RegistryServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            assert await _health(health) == health_pb2.HealthCheckResponse.SERVING
            await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="kept")))

            await asyncio.to_thread(throwaway_postgres.kill)
            await _wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING, within=10)
            for call in (
                registry.GetModel(pb.GetModelRequest(model="kept"), timeout=10),
                registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="lost")), timeout=10),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call
                assert exc.value.code() is grpc.StatusCode.UNAVAILABLE, exc.value.details()

            await asyncio.to_thread(throwaway_postgres.start)
            await _wait_health(health, health_pb2.HealthCheckResponse.SERVING, within=15)
            assert (await registry.GetModel(pb.GetModelRequest(model="kept"))).model.name == "kept"
            code = None
            try:
                await registry.GetModel(pb.GetModelRequest(model="lost"))
            except grpc.aio.AioRpcError as err:
                code = err.code()
            assert code is grpc.StatusCode.NOT_FOUND
            await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="after")))


async def test_server_started_while_database_down_serves_once_it_appears(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    await asyncio.to_thread(throwaway_postgres.stop)
    async with running_server(_settings(throwaway_postgres.url, tmp_path)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert await _health(health) == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.to_thread(throwaway_postgres.start)
            await _wait_health(health, health_pb2.HealthCheckResponse.SERVING, within=15)
            registry = registry_grpc.RegistryServiceStub(channel)
            await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="late")))


async def test_readiness_flips_not_serving_well_inside_the_old_lag(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    """Issue 13 item 6: readiness used to lag an outage by ~5.6 s (the ping waited db_timeout_s).
    Each ping now has db_check_timeout_s, so NOT_SERVING comes within interval + timeout."""
    settings = _settings(throwaway_postgres.url, tmp_path).model_copy(
        update={"db_check_interval_s": 0.3, "db_check_timeout_s": 0.5, "db_timeout_s": 5.0}
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert await _health(health) == health_pb2.HealthCheckResponse.SERVING
            await asyncio.to_thread(throwaway_postgres.kill)
            took = await _wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING, within=2.5)
            assert took < 2.5
            await asyncio.to_thread(throwaway_postgres.start)
            await _wait_health(health, health_pb2.HealthCheckResponse.SERVING, within=15)


async def test_an_rpc_meeting_the_outage_turns_readiness_off_at_once(
    throwaway_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    """With a slow periodic check, the first RPC that meets the outage flips readiness itself."""
    settings = _settings(throwaway_postgres.url, tmp_path).model_copy(
        update={"db_check_interval_s": 4.0, "db_check_timeout_s": 1.0, "db_timeout_s": 1.0}
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            registry = registry_grpc.RegistryServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="kept")))
            assert await _health(health) == health_pb2.HealthCheckResponse.SERVING
            await asyncio.to_thread(throwaway_postgres.kill)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await registry.GetModel(pb.GetModelRequest(model="kept"), timeout=10)
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
            assert await _health(health) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert loop.time() - start < 3.0  # before the 4 s periodic check could have run
            await asyncio.to_thread(throwaway_postgres.start)
            await _wait_health(health, health_pb2.HealthCheckResponse.SERVING, within=15)
            assert (await registry.GetModel(pb.GetModelRequest(model="kept"))).model.name == "kept"
