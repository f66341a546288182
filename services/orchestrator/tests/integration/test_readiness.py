"""Readiness follows the dependencies: the orchestrator's grpc.health.v1 status is SERVING only
while its PostgreSQL, its Redis and the model server (grpc.health.v1 Check) answer; it turns
NOT_SERVING while one is down (liveness stays SERVING) and SERVING again when it is back, without
a restart. Real PostgreSQL and Redis servers of the test's own, stopped and restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import orchestrator_fake_model_server as fake_model_server
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orchestrator_test_helpers import make_settings

from modelserve_common.testing.databases import ThrowawayPostgres, ThrowawayRedis
from modelserve_orchestrator.server import running_server

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "modelserve.orchestrator.v1.OrchestratorService"


async def _status(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(resp.status)


async def _wait(stub: health_pb2_grpc.HealthStub, want: int, what: str, within: float = 15.0) -> float:
    start = time.monotonic()
    last = None
    while time.monotonic() - start < within:
        last = await _status(stub)
        if last == want:
            assert await _status(stub, SERVICE) == want
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: health stayed {last}, wanted {want} within {within}s")


async def test_readiness_follows_database_redis_and_model_server_outages(
    tmp_path: Path, throwaway_postgres: ThrowawayPostgres, throwaway_redis: ThrowawayRedis
) -> None:
    models: Any = fake_model_server.FakeModelServer(workers=4).start()
    try:
        settings = make_settings(
            tmp_path,
            models.target,
            database_url=throwaway_postgres.url,
            redis_url=throwaway_redis.url,
            redis_prefix="readiness:",
            dependency_check_interval_s=0.1,
            dependency_check_timeout_s=0.5,
            db_timeout_s=1.0,
        )
        async with running_server(settings) as running:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                await _wait(stub, SERVING, "all dependencies up")

                # the model server says NOT_SERVING, then is gone altogether, then comes back
                models.set_serving(False)
                await _wait(stub, NOT_SERVING, "model server NOT_SERVING")
                assert await _status(stub, "liveness") == SERVING
                port = models.port
                models.stop()
                await _wait(stub, NOT_SERVING, "model server down")
                models = fake_model_server.FakeModelServer(workers=4, port=port).start()
                await _wait(stub, SERVING, "model server back")

                # Redis down and back
                throwaway_redis.stop()
                await _wait(stub, NOT_SERVING, "redis down")
                assert await _status(stub, "liveness") == SERVING
                throwaway_redis.start()
                await _wait(stub, SERVING, "redis back")

                # PostgreSQL down and back
                throwaway_postgres.kill()
                await _wait(stub, NOT_SERVING, "database down")
                assert await _status(stub, "liveness") == SERVING
                throwaway_postgres.start()
                await _wait(stub, SERVING, "database back", within=30)
    finally:
        models.stop()


async def test_readiness_not_serving_at_start_while_model_server_is_absent(tmp_path: Path) -> None:
    from modelserve_common.testing import free_port

    port = free_port()
    settings = make_settings(
        tmp_path, f"127.0.0.1:{port}", dependency_check_interval_s=0.1, dependency_check_timeout_s=0.5
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            assert await _status(stub) == NOT_SERVING
            models = fake_model_server.FakeModelServer(workers=4, port=port).start()
            try:
                await _wait(stub, SERVING, "model server started")
            finally:
                models.stop()
