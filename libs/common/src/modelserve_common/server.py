"""Server lifecycle: build a grpc.aio server with THE interceptor chain, health, reflection and
metrics; start it; on SIGTERM/SIGINT report NOT_SERVING, drain in-flight RPCs within the grace
period, then stop. A port that cannot be bound or a setting that cannot work stops the start with
one line on stderr naming the port or setting and its environment variable (exit 1, or 2 for a bad
setting), not a traceback."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer as AioReflectionServicer
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings, ConfigurationError, StartupError, env_name
from modelserve_common.errors import ServiceError
from modelserve_common.handlers import HandlerCache
from modelserve_common.health import HealthReporter
from modelserve_common.interceptors import HandlerWrapper, server_chain
from modelserve_common.metrics import MetricsEndpoint, start_metrics_endpoint
from modelserve_common.reuseport import steer_round_robin
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


class _WrappedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """A generic handler whose method handlers come out wrapped (cached per method)."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], wrap: HandlerWrapper) -> None:
        self._inner = inner
        self._cache = HandlerCache(wrap)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._cache.get(handler_call_details.method, handler)


class _Registrar:
    """Stands in for the server while services register: every method handler they add is wrapped
    by the chain once, here, instead of per RPC."""

    def __init__(self, server: grpc.aio.Server, wrap: HandlerWrapper) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        wrap = self._wrap
        server: Any = self._server  # grpc-stubs predates registered method handlers
        server.add_registered_method_handlers(
            service_name, {m: wrap(f"/{service_name}/{m}", h) for m, h in method_handlers.items()}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def bind_problem(host: str, port: int) -> tuple[str, bool] | None:
    """Binds ``host:port`` the way the server will (SO_REUSEADDR, dual-stack wildcard) and closes
    it again: None when that works, else (why, whether it is a configuration error)."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(name or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"host {host!r} does not resolve ({exc.strerror})", True
    for family, kind, proto, _, addr in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # e.g. no IPv6 on this machine
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and name in ("::", ""):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "address already in use (another process listens there)", False
                if exc.errno == errno.EACCES:
                    return "permission denied (ports below 1024 need privileges)", True
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"{host} is not an address of this machine", True
                if exc.errno == errno.EAFNOSUPPORT:
                    continue
                return exc.strerror or type(exc).__name__, False
    return None


def _listen_error(
    settings: BaseServiceSettings, what: str, field: str, host: str, port: int, why: str, config: bool
) -> StartupError:
    cls = type(settings)
    flag = "--" + field.replace("_", "-")
    if config and "host" in why:
        host_field = field.removesuffix("_port") + "_host"
        host_field = host_field if host_field in cls.model_fields else "grpc_host"
        fix = f"check {env_name(cls, host_field)} (or --{host_field.replace('_', '-')})"
    else:
        fix = f"set {env_name(cls, field)} (or {flag}) to a free port"
        if field == "metrics_port":
            fix += ", or -1 to disable metrics"
    error = ConfigurationError if config else StartupError
    return error(
        f"{settings.service_name}: cannot listen on {what} port {port} ({host}:{port}): {why}; {fix}"
    )


def check_port(settings: BaseServiceSettings, what: str, field: str, host: str, port: int) -> None:
    """Raises a StartupError naming the port and its variable when ``host:port`` cannot be bound
    (a negative port means disabled and is not checked; 0 checks the host only). ``field`` is the
    setting that holds the port."""
    if port < 0:
        return
    problem = bind_problem(host, port)
    if problem is not None:
        raise _listen_error(settings, what, field, host, port, *problem)


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
    handlers: Sequence[grpc.GenericRpcHandler[Any, Any]] = (),
    wrappers: Sequence[HandlerWrapper] = (),
    extra_addresses: Sequence[str] = (),
    errors_only: Collection[str] = (),
) -> AsyncIterator[RunningServer]:
    """Starts a gRPC server for ``services``; health stays NOT_SERVING until the caller calls
    ``running.health.set_serving()``. On exit: NOT_SERVING, drain for ``shutdown_grace_s``, stop.
    ``handlers`` are generic handlers served beside ``services``; ``wrappers`` (applied once per
    method handler) join THE chain where modelserve_common.interceptors describes; the access log
    records only the failures of the methods in ``errors_only``.
    ``extra_addresses`` (e.g. ``unix:/path``, for sibling workers) are served too, without TLS.
    With ``reuse_port`` and ``workers`` > 1 in the settings, the port's SO_REUSEPORT group hands
    new connections to the workers in turn (modelserve_common.reuseport) instead of by hash."""
    health = HealthReporter([s.name for s in services])
    chain = server_chain(settings, tracer_provider, wrappers, errors_only)
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
    try:
        creds = server_credentials(settings)
    except (ServiceError, OSError) as exc:
        names = ", ".join(
            env_name(type(settings), f) for f in ("tls_cert_file", "tls_key_file", "tls_ca_file")
        )
        raise ConfigurationError(f"{settings.service_name}: bad TLS settings ({names}): {exc}") from None
    if not getattr(settings, "reuse_port", False):  # workers sharing a port (SO_REUSEPORT) bind it together
        check_port(settings, "gRPC", "grpc_port", settings.grpc_host, settings.grpc_port)
    check_port(settings, "metrics", "metrics_port", "0.0.0.0", settings.metrics_port)
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError:  # grpc raises "Failed to bind" (older versions return 0)
        port = 0
    if port == 0:  # lost a race since check_port, or grpc refused the address itself
        why = bind_problem(settings.grpc_host, settings.grpc_port) or ("grpc could not bind it", True)
        raise _listen_error(settings, "gRPC", "grpc_port", settings.grpc_host, settings.grpc_port, *why)
    for extra in extra_addresses:
        try:
            bound = server.add_insecure_port(extra)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise StartupError(f"{settings.service_name}: cannot listen on {extra}")
    await health.start()
    await server.start()
    workers = int(getattr(settings, "workers", 1))
    round_robin = getattr(settings, "worker_balance", "round_robin") == "round_robin"
    if getattr(settings, "reuse_port", False) and workers > 1 and round_robin:
        why_not = steer_round_robin(port, workers)
        if why_not is None:
            log.info("server.workers_round_robin", grpc_port=port, workers=workers)
        else:  # the kernel's hash: two connections may land on one worker
            log.warning("server.workers_hashed", grpc_port=port, workers=workers, reason=why_not)
    try:
        endpoint = start_metrics_endpoint(settings.metrics_port)
    except OSError as exc:
        await server.stop(0)
        raise _listen_error(
            settings,
            "metrics",
            "metrics_port",
            "0.0.0.0",
            settings.metrics_port,
            exc.strerror or str(exc),
            False,
        ) from None
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


def _fail_start(message: str, status: int) -> NoReturn:
    """Writes the log lines still buffered (modelserve_common.logging writes them in batches), then
    ``message`` as the last line on stderr, and exits with ``status``."""
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        drain = getattr(stream, "drain", None)
        if callable(drain):
            drain()
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(status)


async def run_until_signal(running: AbstractAsyncContextManager[Any]) -> None:
    """Runs ``running`` (a service's running_server(...)) until SIGTERM or SIGINT. A signal during
    start-up (e.g. while waiting for a database) abandons the start promptly. A StartupError (a port
    in use, a setting that cannot work) or a ServiceError while starting (e.g. a database schema
    newer than this code) becomes one line on stderr and SystemExit with status 1 (2 for a bad
    setting) instead of a traceback."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stop = asyncio.Event()
    started = False

    def on_signal() -> None:
        stop.set()
        if not started and main is not None:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with running:
            started = True
            await stop.wait()
            log.info("server.signal_received")
    except asyncio.CancelledError:
        if started or not stop.is_set() or main is None:
            raise
        main.uncancel()
        log.info("server.stopped_during_startup")
    except StartupError as exc:
        _fail_start(str(exc), exc.exit_code)
    except ServiceError as exc:
        if started:
            raise
        _fail_start(f"start-up failed ({exc.code.name}): {exc.message}", 1)
