"""Registry test fixtures: a running registry on SQLite and on real PostgreSQL (parametrized)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings


def make_settings(url: str, tmp: Path, **over: Any) -> RegistrySettings:
    base: dict[str, Any] = dict(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        database_url=url,
        data_dir=tmp,
        db_check_interval_s=0.2,
        db_timeout_s=2.0,
        watch_poll_interval_s=0.1,
        shutdown_grace_s=0.5,
        access_log=False,
    )
    base.update(over)
    return RegistrySettings(**base)


@pytest.fixture
def registry_settings() -> Callable[..., RegistrySettings]:
    """make_settings for tests that need their own overrides: ``registry_settings(url, tmp, **over)``."""
    return make_settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def registry(database_url: str, tmp_path: Path) -> AsyncIterator[registry_grpc.RegistryServiceStub]:
    async with running_server(make_settings(database_url, tmp_path)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield registry_grpc.RegistryServiceStub(channel)
