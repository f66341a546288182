"""Server lifecycle: build a grpc.aio server with THE interceptor chain, health, reflection and
metrics; start it; on SIGTERM/SIGINT report NOT_SERVING, drain in-flight RPCs within the grace
period, then stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer as AioReflectionServicer
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings
from modelserve_common.health import HealthReporter
from modelserve_common.interceptors import HandlerWrapper, server_chain
from modelserve_common.metrics import MetricsEndpoint, start_metrics_endpoint
from modelserve_common.tls import server_credentials

log = structlog.get_logger(__name__)

Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class GrpcService:
    """A servicer to register: its full service name and the generated ``add_…_to_server``."""

    name: str
    register: Registrar


def server_options(settings: BaseServiceSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 1 if getattr(settings, "reuse_port", False) else 0),
    ]


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come out wrapped (cached per method)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: HandlerWrapper) -> None:
        self._inner = inner
        self._wrap = wrap
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._cache[method] = (handler, wrapped)
        return wrapped


class _Registrar:
    """Stands in for the server while services register: every method handler they add is wrapped
    by the chain once, here, instead of per RPC."""

    def __init__(self, server: grpc.aio.Server, wrap: HandlerWrapper) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        wrap = self._wrap
        server: Any = self._server  # grpc-stubs predates registered method handlers
        server.add_registered_method_handlers(
            service_name, {m: wrap(f"/{service_name}/{m}", h) for m, h in method_handlers.items()}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@dataclass
class RunningServer:
    """A started server: the bound gRPC port, its health and metrics endpoint."""

    server: grpc.aio.Server
    port: int
    health: HealthReporter
    metrics: MetricsEndpoint | None
    extra: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def grpc_server(
    settings: BaseServiceSettings,
    services: Sequence[GrpcService],
    *,
    tracer_provider: TracerProvider | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    handlers: Sequence[grpc.GenericRpcHandler] = (),
    wrappers: Sequence[HandlerWrapper] = (),
) -> AsyncIterator[RunningServer]:
    """Starts a gRPC server for ``services``; health stays NOT_SERVING until the caller calls
    ``running.health.set_serving()``. On exit: NOT_SERVING, drain for ``shutdown_grace_s``, stop.
    ``interceptors`` (grpc.aio) and ``wrappers`` (applied once per method handler, cheaper) join
    THE chain in the places modelserve_common.interceptors describes."""
    health = HealthReporter([s.name for s in services])
    chain = server_chain(settings, tracer_provider, interceptors, wrappers)
    server = grpc.aio.server(
        interceptors=chain.interceptors,
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    registrar: Any = _Registrar(server, chain.wrap)
    for svc in services:
        svc.register(registrar)
    if handlers:
        registrar.add_generic_rpc_handlers(tuple(handlers))
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, registrar)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        AioReflectionServicer(
            [s.name for s in services]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        ),
        registrar,
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    creds = server_credentials(settings)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    await health.start()
    await server.start()
    endpoint = start_metrics_endpoint(settings.metrics_port)
    log.info(
        "server.started",
        grpc_port=port,
        metrics_port=endpoint.port if endpoint else None,
        tls=creds is not None,
        services=[s.name for s in services],
    )
    try:
        yield RunningServer(server=server, port=port, health=health, metrics=endpoint)
    finally:
        await health.enter_graceful_shutdown()
        log.info("server.draining", grace_s=settings.shutdown_grace_s)
        await server.stop(settings.shutdown_grace_s)
        if endpoint:
            endpoint.stop()
        log.info("server.stopped")


async def run_until_signal(running: AbstractAsyncContextManager[Any]) -> None:
    """Runs ``running`` (a service's running_server(...)) until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running:
        await stop.wait()
        log.info("server.signal_received")
