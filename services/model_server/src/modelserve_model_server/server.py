"""Composition root of the model_server: wires settings, backends, the model manager and the
servicer into a running server."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.channels import create_channel
from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_model_server import methods
from modelserve_model_server.archive import ArchiveLimits
from modelserve_model_server.artifacts import ArtifactStore, registry_download
from modelserve_model_server.backend import Backend
from modelserve_model_server.cache import ArtifactCache
from modelserve_model_server.codec import Limits
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.onnx_backend import OnnxBackend
from modelserve_model_server.ownership import Ownership, OwnershipGuard
from modelserve_model_server.prediction_logger import prediction_logger_for
from modelserve_model_server.python_backend import PythonBackend
from modelserve_model_server.registry_follower import RegistryFollower
from modelserve_model_server.service import InferenceService
from modelserve_model_server.servicer import InferenceServicer
from modelserve_model_server.settings import ModelServerSettings
from modelserve_model_server.triton import TritonRouter
from modelserve_model_server.triton_pool import TritonPool, triton_pool
from modelserve_model_server.workers import Siblings, socket_path

SERVICE_NAME = "inference.GRPCInferenceService"
# Registry reads the follower may retry on UNAVAILABLE (idempotent).
_REGISTRY_RETRY = [
    "modelserve.registry.v1.RegistryService/ListDeployments",
    "modelserve.registry.v1.RegistryService/ListAliases",
    "modelserve.registry.v1.RegistryService/GetModelVersion",
]


def default_backends(settings: ModelServerSettings) -> dict[str, Backend]:
    """The CPU backends: ONNX Runtime and Python."""
    return {
        "onnxruntime": OnnxBackend(settings.onnx_intra_op_threads, settings.onnx_inter_op_threads),
        "python": PythonBackend(),
    }


def _siblings(settings: ModelServerSettings, triton: TritonPool | None) -> tuple[Siblings, list[str]]:
    """The other workers of this server (workers.py; none with one worker) and this worker's
    unix socket address."""
    if settings.workers < 2 or settings.worker_dir is None:
        return Siblings(Path(), 0, 1), []
    own_socket = socket_path(settings.worker_dir, settings.worker_index)
    own_socket.unlink(missing_ok=True)
    siblings = Siblings(settings.worker_dir, settings.worker_index, settings.workers)
    if triton is not None:  # Triton's models: one set of statistics, not one per worker
        siblings.shared = triton.serves
    return siblings, [f"unix:{own_socket}"]


@asynccontextmanager
async def running_server(
    settings: ModelServerSettings,
    *,
    tracer_provider: TracerProvider | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> AsyncIterator[RunningServer]:
    """Starts the model server, then loads the start-up models; health and ServerReady turn
    SERVING/ready once they are loaded (see ModelManager.ready). ``backends`` adds to (or replaces)
    the CPU backends by name. ``running.extra["manager"]`` is the ModelManager (load/unload seam),
    ``running.extra["ownership"]`` the model -> tenant table every inference RPC checks."""
    artifact_roots = settings.artifact_root_paths()
    staging_dir = settings.staging_dir()
    ownership = Ownership(settings.shared_model_names())
    manager = ModelManager(
        settings.model_repository,
        {**default_backends(settings), **(backends or {})},
        limits=Limits(
            settings.max_inputs, settings.max_outputs, settings.max_elements, settings.max_request_elements
        ),
        default_max_queue_size=settings.default_max_queue_size,
        tracer=tracer_provider.get_tracer("modelserve.model_server") if tracer_provider is not None else None,
        drain_timeout_s=max(settings.shutdown_grace_s, 1.0),
        strict_readiness=settings.strict_readiness,
        # model code loads only from the artifact roots, the private copies (and the cache of
        # uploaded artifacts, verified by sha256) and the repository
        code_roots=[
            *artifact_roots,
            staging_dir.absolute(),
            settings.cache_dir().absolute(),
            settings.model_repository.absolute(),
        ],
    )
    # Triton path (README-triton.md): None unless MODEL_SERVER_TRITON_URL is set. Local models win.
    local_names: set[str] = set()
    started = False
    triton = triton_pool(settings, local_models=lambda: local_names)
    service = InferenceService(manager, settings.stream_max_in_flight, remote=triton)
    servicer = InferenceServicer(service, ownership)
    services = [
        GrpcService(SERVICE_NAME, lambda s: svc_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, s))
    ]

    def is_ready() -> bool:
        if triton is None:
            return manager.ready
        local_ok = manager.ready or (started and not settings.required_models.strip() and manager.gates_open)
        return local_ok and triton.ready

    # The ownership guard sits outside the Triton router: Triton-served models are confined too.
    router = TritonRouter(triton, ready=is_ready) if triton is not None else None
    wrappers = [OwnershipGuard(ownership, manager.missing).wrap, router.wrap] if router is not None else []
    # Registry follower (registry_follower.py): None unless MODEL_SERVER_REGISTRY_URL is set.
    registry_channel = None
    follower = None
    if settings.registry_url:
        registry_channel = create_channel(
            settings.registry_url, settings, retry_methods=_REGISTRY_RETRY, tracer_provider=tracer_provider
        )
        follower = RegistryFollower(
            manager,
            registry_grpc.RegistryServiceStub(registry_channel),
            ArtifactStore(
                staging_dir,
                artifact_roots,
                settings.artifact_uri_max_length,
                cache=ArtifactCache(
                    settings.cache_dir(),
                    settings.artifact_cache_max_bytes,
                    ArchiveLimits(settings.archive_max_bytes, settings.archive_max_files),
                ),
                download=registry_download(
                    registry_grpc.RegistryServiceStub(registry_channel), settings.artifact_fetch_timeout_s
                ),
            ),
            call_timeout_s=settings.client_timeout_s,
            watch_timeout_s=settings.registry_watch_timeout_s,
            backoff_min_s=settings.registry_backoff_min_s,
            backoff_max_s=settings.registry_backoff_max_s,
            ownership=ownership,
        )
        service.prediction_logger = prediction_logger_for(
            settings, registry_grpc.RegistryServiceStub(registry_channel), follower.logging_policy
        )
        if router is not None:  # requests forwarded to Triton are logged like local ones
            router.prediction_log = service.prediction_logger.observe_forwarded
    # Workers of one server (--workers N) answer readiness, statistics and load/unload for all.
    siblings, extra_addresses = _siblings(settings, triton)
    wrappers = [siblings.wrap, *wrappers]
    try:
        quiet_ok = () if settings.access_log_inference else (methods.MODEL_INFER, methods.MODEL_STREAM_INFER)
        async with grpc_server(
            settings,
            services,
            tracer_provider=tracer_provider,
            wrappers=wrappers,
            extra_addresses=extra_addresses,
            errors_only=quiet_ok,
        ) as running:

            async def follow_readiness() -> None:
                local_names.clear()
                local_names.update(manager.repository_models())
                local_names.update(mv.name for mv in manager.all_versions())
                if is_ready():
                    await running.health.set_serving()
                else:
                    await running.health.set_not_serving()

            manager.on_change(follow_readiness)
            running.extra["manager"] = manager
            running.extra["ownership"] = ownership
            if follower is not None:
                await follower.prepare()  # not ready before the registry's deployments are loaded
            await manager.start(settings.load_models, settings.required_models)
            # Start-up objects (modules, configs, loaded models) never die: moving them out of the
            # collector's generations makes every later collection cheaper on the request path.
            gc.collect()
            gc.freeze()
            started = True
            if triton is not None:
                triton.on_readiness = lambda _ready: follow_readiness()
                await triton.start()
                running.extra["triton"] = triton
                await follow_readiness()
            if follower is not None:
                follower.start()
                running.extra["follower"] = follower
            if service.prediction_logger is not None:
                service.prediction_logger.start()
                running.extra["prediction_logger"] = service.prediction_logger
            yield running
    finally:
        await siblings.close()
        if service.prediction_logger is not None:
            await service.prediction_logger.close()
        if follower is not None:
            await follower.close()
        if registry_channel is not None:
            await registry_channel.close(None)
        if triton is not None:
            await triton.close()
        await manager.close()
