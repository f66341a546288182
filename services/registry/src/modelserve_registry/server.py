"""Composition root of the registry: wires settings, dependencies and servicers into a running server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.sdk.trace import TracerProvider

from modelserve.registry.v1 import registry_service_pb2_grpc as svc_grpc
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_registry.settings import RegistrySettings

SERVICE_NAME = "modelserve.registry.v1.RegistryService"


@asynccontextmanager
async def running_server(
    settings: RegistrySettings, *, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[RunningServer]:
    """Starts the registry; SERVING once its dependencies are ready. RPCs not yet built answer
    UNIMPLEMENTED (the generated base servicer), never a fake result."""
    servicer = svc_grpc.RegistryServiceServicer()
    services = [GrpcService(SERVICE_NAME, lambda s: svc_grpc.add_RegistryServiceServicer_to_server(servicer, s))]
    async with grpc_server(settings, services, tracer_provider=tracer_provider) as running:
        await running.health.set_serving()
        yield running
