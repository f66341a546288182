"""Composition root of the model_server: wires settings, backends, the model manager and the
servicer into a running server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_model_server.backend import Backend
from modelserve_model_server.codec import Limits
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.onnx_backend import OnnxBackend
from modelserve_model_server.python_backend import PythonBackend
from modelserve_model_server.service import InferenceService
from modelserve_model_server.servicer import InferenceServicer
from modelserve_model_server.settings import ModelServerSettings

SERVICE_NAME = "inference.GRPCInferenceService"


def default_backends(settings: ModelServerSettings) -> dict[str, Backend]:
    """The CPU backends: ONNX Runtime and Python."""
    return {
        "onnxruntime": OnnxBackend(settings.onnx_intra_op_threads, settings.onnx_inter_op_threads),
        "python": PythonBackend(),
    }


@asynccontextmanager
async def running_server(
    settings: ModelServerSettings,
    *,
    tracer_provider: TracerProvider | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> AsyncIterator[RunningServer]:
    """Starts the model server, then loads the start-up models; health and ServerReady turn
    SERVING/ready once they are loaded (see ModelManager.ready). ``backends`` adds to (or replaces)
    the CPU backends by name. ``running.extra["manager"]`` is the ModelManager (load/unload seam)."""
    manager = ModelManager(
        settings.model_repository,
        {**default_backends(settings), **(backends or {})},
        limits=Limits(settings.max_inputs, settings.max_outputs, settings.max_elements),
        default_max_queue_size=settings.default_max_queue_size,
        tracer=tracer_provider.get_tracer("modelserve.model_server") if tracer_provider is not None else None,
        drain_timeout_s=max(settings.shutdown_grace_s, 1.0),
    )
    servicer = InferenceServicer(InferenceService(manager, settings.stream_max_in_flight))
    services = [
        GrpcService(SERVICE_NAME, lambda s: svc_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, s))
    ]
    try:
        async with grpc_server(settings, services, tracer_provider=tracer_provider) as running:

            async def follow_readiness() -> None:
                if manager.ready:
                    await running.health.set_serving()
                else:
                    await running.health.set_not_serving()

            manager.on_change(follow_readiness)
            running.extra["manager"] = manager
            await manager.start(settings.load_models, settings.required_models)
            yield running
    finally:
        await manager.close()
