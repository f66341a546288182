"""Composition root of the gateway: upstream channels, the guard, the REST app on uvicorn and
the gRPC front door, started together and drained together."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager

import structlog
import uvicorn
from google.protobuf.descriptor import ServiceDescriptor
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.server import GrpcService, RunningServer, grpc_server
from modelserve_gateway.app import GatewayApp
from modelserve_gateway.auth import Authenticator
from modelserve_gateway.clients import FRONTED, REGISTRY, Upstreams
from modelserve_gateway.guard import Guard
from modelserve_gateway.openapi import openapi_bytes
from modelserve_gateway.proxy import FrontDoor
from modelserve_gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from modelserve_gateway.registry_cache import RegistryCache
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.routes import Router, compile_routes

log = structlog.get_logger(__name__)


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's run_until_signal owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then (a
    # response is two writes, headers and body; with Nagle on, the second waits ~40 ms for an ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


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
    )
    if limiter is None:
        limiter = (
            RedisRateLimiter(settings.redis_url, fail_open=settings.rate_limit_fail_open)
            if settings.redis_url
            else MemoryRateLimiter()
        )
    guard = Guard(settings, Authenticator(settings, cache), limiter, cache)
    routes = compile_routes(fronted)
    app = GatewayApp(settings, Router(routes), upstreams, guard, openapi_bytes(routes))
    front_door = FrontDoor([svc for svc, _ in fronted], upstreams, guard, settings.route_key_header)
    services = [GrpcService(svc.full_name, lambda s: None) for svc, _ in fronted]
    sock = _bind(settings.http_host, settings.http_port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
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
            http.should_exit = True
            with contextlib.suppress(Exception):
                await task
            sock.close()
            await cache.stop()
            await limiter.close()
            await upstreams.close()
