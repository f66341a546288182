"""Composition root of the model_server: wires settings, dependencies and servicers into a running server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_model_server.settings import ModelServerSettings
from modelserve_model_server.triton import TritonRouter, triton_backend

SERVICE_NAME = "inference.GRPCInferenceService"


@asynccontextmanager
async def running_server(
    settings: ModelServerSettings, *, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[RunningServer]:
    """Starts the model_server; SERVING once its dependencies are ready. RPCs not yet built answer
    UNIMPLEMENTED (the generated base servicer), never a fake result."""
    servicer = svc_grpc.GRPCInferenceServiceServicer()
    services = [
        GrpcService(SERVICE_NAME, lambda s: svc_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, s))
    ]
    triton = triton_backend(settings)  # None unless MODEL_SERVER_TRITON_URL is set
    interceptors = [TritonRouter(triton)] if triton is not None else []
    async with grpc_server(
        settings, services, tracer_provider=tracer_provider, interceptors=interceptors
    ) as running:
        if triton is None:
            await running.health.set_serving()
            yield running
            return

        async def follow_triton(ready: bool) -> None:  # readiness reflects Triton's
            await (running.health.set_serving() if ready else running.health.set_not_serving())

        triton.on_readiness = follow_triton
        await triton.start()
        running.extra["triton"] = triton
        try:
            yield running
        finally:
            await triton.close()
