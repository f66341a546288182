"""Orchestrator test fixtures: a real gRPC fake model server (numpy models, in a thread) and a
running orchestrator on SQLite + in-process queue, or on real PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_orchestrator.server import running_server
from modelserve_orchestrator.settings import OrchestratorSettings


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / file)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fake_model_server = _load("orchestrator_fake_model_server", "fake_model_server.py")
make_settings = _load("orchestrator_test_helpers", "helpers.py").make_settings


@pytest.fixture
def models() -> Iterator[Any]:
    server = fake_model_server.FakeModelServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Orch:
    stub: pb_grpc.OrchestratorServiceStub
    settings: OrchestratorSettings
    running: Any


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def orch_settings(
    backend: str, tmp_path: Path, models: Any, request: pytest.FixtureRequest
) -> OrchestratorSettings:
    if backend == "postgres":
        pg = request.getfixturevalue("postgres_url")
        return make_settings(
            tmp_path,
            models.target,
            database_url=pg,
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"),
        )
    return make_settings(tmp_path, models.target)


@pytest.fixture
async def orch(orch_settings: OrchestratorSettings) -> AsyncIterator[Orch]:
    async with running_server(orch_settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            yield Orch(pb_grpc.OrchestratorServiceStub(ch), orch_settings, running)
        await asyncio.sleep(0.1)
