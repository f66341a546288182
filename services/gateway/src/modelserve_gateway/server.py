"""Composition root of the gateway: upstream channels, the guard, the REST app on uvicorn and
the gRPC front door, started together; on shutdown both refuse new work at once and drain
concurrently within one grace, and the upstream channels close last."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager
from typing import cast

import structlog
import uvicorn
from google.protobuf.descriptor import ServiceDescriptor
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.reuseport import steer_round_robin
from modelserve_common.server import GrpcService, RunningServer, check_port, grpc_server
from modelserve_gateway.auth import Authenticator
from modelserve_gateway.clients import FRONTED, REGISTRY, Upstreams
from modelserve_gateway.guard import Guard
from modelserve_gateway.http_protocol import protocol_class
from modelserve_gateway.openapi import openapi_bytes
from modelserve_gateway.proxy import FrontDoor
from modelserve_gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from modelserve_gateway.registry_cache import RegistryCache
from modelserve_gateway.rest.asgi import GatewayApp
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.routes import Router, compile_routes

log = structlog.get_logger(__name__)


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's run_until_signal owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then (a
    # response is two writes, headers and body; with Nagle on, the second waits ~40 ms for an ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # workers share the port (--workers)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _drain(
    running: RunningServer, http: _UvicornServer, task: asyncio.Task[None], grace_s: float
) -> None:
    """Shutdown of both doors at once, within one grace: health NOT_SERVING, the gRPC server stops
    accepting calls and the REST listener closes (open keep-alive connections are closed once
    their request is answered), then both drain concurrently; in-flight calls on either door
    complete, those still running after ``grace_s`` are cancelled. The caller closes the upstream
    channels only after this returns, so no in-flight call loses its upstream."""
    await running.health.enter_graceful_shutdown()
    # uvicorn notices should_exit on its next 0.1 s tick only: refuse new REST work now. Idle
    # keep-alive connections close, busy ones close after their response (uvicorn repeats this).
    for listener in http.servers:
        listener.close()
    for connection in list(http.server_state.connections):
        connection.shutdown()
    http.should_exit = True
    log.info("gateway.draining", grace_s=grace_s)

    async def rest() -> None:
        with contextlib.suppress(Exception):
            await task

    await asyncio.gather(running.server.stop(grace_s), rest())
    log.info("gateway.drained")


@asynccontextmanager
async def running_server(
    settings: GatewaySettings,
    *,
    tracer_provider: TracerProvider | None = None,
    limiter: RateLimiter | None = None,
    extra_services: Sequence[tuple[ServiceDescriptor, str]] = (),
) -> AsyncIterator[RunningServer]:
    """Starts the gateway: REST on ``http_port`` (``running.extra["http_port"]``), the gRPC front
    door on ``grpc_port``. ``extra_services`` ((descriptor, target) pairs) fronts more services,
    e.g. the test proto with every template form."""
    upstreams = Upstreams(settings, tracer_provider)
    fronted = list(FRONTED)
    for svc, target in extra_services:
        upstreams.add(svc, target, settings)
        fronted.append((svc, svc.full_name))
    cache = RegistryCache(
        upstreams[REGISTRY],
        key_ttl_s=settings.api_key_cache_ttl_s,
        deployment_ttl_s=settings.deployment_cache_ttl_s,
        watch_timeout_s=settings.stream_timeout_s,
        watch_backoff_min_s=settings.watch_backoff_min_s,
        watch_backoff_max_s=settings.watch_backoff_max_s,
    )
    if limiter is None:
        limiter = (
            RedisRateLimiter(settings.redis_url, fail_open=settings.rate_limit_fail_open)
            if settings.redis_url
            else MemoryRateLimiter()
        )
    guard = Guard(settings, Authenticator(settings, cache), limiter, cache)
    routes = compile_routes(fronted)
    app = GatewayApp(settings, Router(routes), upstreams, guard, openapi_bytes(routes), tracer_provider)
    front_door = FrontDoor(
        [svc for svc, _ in fronted],
        upstreams,
        guard,
        settings.route_key_header,
        stream_buffer=settings.stream_infer_buffer,
    )
    services = [GrpcService(svc.full_name, lambda s: None) for svc, _ in fronted]
    if not settings.reuse_port:  # workers sharing the port bind it together
        check_port(settings, "HTTP", "http_port", settings.http_host, settings.http_port)
    sock = _bind(settings.http_host, settings.http_port, settings.reuse_port)
    if settings.reuse_port and settings.workers > 1 and settings.worker_balance == "round_robin":
        why_not = steer_round_robin(sock.getsockname()[1], settings.workers)
        if why_not is not None:  # the kernel's hash: two connections may land on one worker
            log.warning("gateway.http_workers_hashed", workers=settings.workers, reason=why_not)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        # 431/400 as JSON, the head-size limit (modelserve_gateway.http_protocol); no WebSocket
        # upgrades (an Upgrade header is an ordinary request to the gateway).
        http=protocol_class(settings.max_header_bytes, settings.head_read_timeout_s),
        ws="none",
        # uvicorn hands this to asyncio.wait_for, which takes fractions: the REST drain gets the
        # same grace as the gRPC one, not a rounded one.
        timeout_graceful_shutdown=cast(int, settings.shutdown_grace_s),
    )
    http = _UvicornServer(config)
    async with grpc_server(
        settings, services, tracer_provider=tracer_provider, handlers=[front_door]
    ) as running:
        if settings.watch_registry:
            cache.start()
        task = asyncio.create_task(http.serve(sockets=[sock]), name="gateway-http")
        while not http.started:
            if task.done():
                task.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        http_port = sock.getsockname()[1]
        running.extra.update(http_port=http_port, app=app, guard=guard, cache=cache)
        log.info(
            "gateway.http_started",
            http_port=http_port,
            routes=len(routes),
            auth_enabled=settings.auth_enabled,
        )
        await running.health.set_serving()
        try:
            yield running
        finally:
            await _drain(running, http, task, settings.shutdown_grace_s)
            sock.close()
            await cache.stop()
            await limiter.close()
            await upstreams.close()
