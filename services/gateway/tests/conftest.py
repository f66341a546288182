"""Gateway test fixtures: real gRPC servers of in-memory fakes of our own protocols (inference,
registry, the test-only template service) and the gateway itself, all on loopback, port 0."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "gen"))
sys.path.insert(0, str(Path(__file__).parent))

from gateway_fakes import FakeInference, FakeRegistry, TemplateServicer  # noqa: E402
from gwtest.v1 import template_service_pb2 as tpl_pb  # noqa: E402
from gwtest.v1 import template_service_pb2_grpc as tpl_grpc  # noqa: E402

from modelserve.inference.v2 import grpc_service_pb2_grpc as inference_grpc  # noqa: E402
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc  # noqa: E402
from modelserve_common.server import RunningServer  # noqa: E402
from modelserve_gateway.server import running_server  # noqa: E402
from modelserve_gateway.settings import GatewaySettings  # noqa: E402

TEMPLATE_SERVICE = tpl_pb.DESCRIPTOR.services_by_name["TemplateService"]


@asynccontextmanager
async def _serve(register: Callable[[grpc.aio.Server], None]) -> AsyncIterator[str]:
    server = grpc.aio.server()
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
def inference() -> FakeInference:
    return FakeInference()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
async def upstreams(inference: FakeInference, registry: FakeRegistry) -> AsyncIterator[dict[str, str]]:
    template = TemplateServicer()
    async with (
        _serve(lambda s: inference_grpc.add_GRPCInferenceServiceServicer_to_server(inference, s)) as inf,
        _serve(lambda s: registry_grpc.add_RegistryServiceServicer_to_server(registry, s)) as reg,
        _serve(lambda s: tpl_grpc.add_TemplateServiceServicer_to_server(template, s)) as tpl,
    ):
        yield {"inference": inf, "registry": reg, "template": tpl}


class Gateway:
    """A running gateway: an httpx client on its REST port and its gRPC target."""

    def __init__(self, running: RunningServer, client: httpx.AsyncClient) -> None:
        self.running = running
        self.http = client
        self.http_port: int = running.extra["http_port"]
        self.grpc_target = f"127.0.0.1:{running.port}"
        self.base_url = f"http://127.0.0.1:{self.http_port}"


GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def make_gateway(upstreams: dict[str, str]) -> GatewayFactory:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Gateway]:
        values: dict[str, Any] = dict(
            grpc_port=0,
            http_port=0,
            http_host="127.0.0.1",
            grpc_host="127.0.0.1",
            metrics_port=-1,
            registry_url=upstreams["registry"],
            model_server_url=upstreams["inference"],
            orchestrator_url=upstreams["inference"],
            auth_enabled=False,
            access_log=False,
            shutdown_grace_s=0.5,
            redis_url=None,
        )
        values.update(overrides)
        settings = GatewaySettings(**values)
        async with running_server(
            settings, extra_services=[(TEMPLATE_SERVICE, upstreams["template"])]
        ) as running:
            port = running.extra["http_port"]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                yield Gateway(running, client)

    return make


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> AsyncIterator[Gateway]:
    async with make_gateway() as gw:
        yield gw
