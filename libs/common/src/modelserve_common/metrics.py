"""Prometheus metrics: the standard gRPC server metrics (the names py-grpc-prometheus uses) and the
exposition endpoint on its own port. Domain metrics live in each service, named
``modelserve_<service>_<thing>_<unit>``."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from modelserve_common import loopmetrics

# Updated on every RPC, on the event loop: lock-free children (loopmetrics), same exposition.
GRPC_SERVER_STARTED = loopmetrics.Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_SERVER_HANDLED = loopmetrics.Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SERVER_HANDLING_SECONDS = loopmetrics.Histogram(
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server (seconds).",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRPC_SERVER_IN_FLIGHT = loopmetrics.Gauge(
    "grpc_server_in_flight",
    "RPCs being handled right now.",
    ["grpc_service"],
)


@dataclass
class MetricsEndpoint:
    """A running exposition endpoint; ``port`` is the bound port."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_metrics_endpoint(port: int, host: str = "0.0.0.0") -> MetricsEndpoint | None:
    """Serves /metrics on ``port`` (0 = any free port); None when ``port`` is -1 (disabled)."""
    if port < 0:
        return None
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    return MetricsEndpoint(port=server.server_port, _server=server, _thread=thread)


# --------------------------------------------------------------------- outgoing calls (every channel)
GRPC_CLIENT_HANDLED = Counter(
    "grpc_client_handled_total",
    "Unary RPCs completed by this process as a client, by upstream service, method and final code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_CLIENT_HANDLING_SECONDS = Histogram(
    "grpc_client_handling_seconds",
    "Latency of unary RPCs made by this process to an upstream (seconds), by upstream service.",
    ["grpc_service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _split_method(method: str | bytes) -> tuple[str, str]:
    text = method.decode() if isinstance(method, bytes) else method
    service, _, name = text.lstrip("/").partition("/")
    return service or "unknown", name or "unknown"


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Counts and times every unary call a channel makes (the method names are our contracts': a
    bounded set). Streams are not timed (their length is the caller's business)."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        service, method = _split_method(details.method)
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            call = await continuation(details, request)
            await call
            code = "OK"
            return call
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            GRPC_CLIENT_HANDLED.labels(service, method, code).inc()
            GRPC_CLIENT_HANDLING_SECONDS.labels(service).observe(time.perf_counter() - started)


# --------------------------------------------------------------------- readiness (every service)
READY = Gauge("modelserve_ready", "1 while this process reports SERVING on grpc.health.v1, else 0.")
READINESS_TRANSITIONS = Counter(
    "modelserve_readiness_transitions_total",
    "Changes of the readiness status (to = serving | not_serving); a quickly rising count is flapping.",
    ["to"],
)
READINESS_TRANSITIONS.labels("serving")
READINESS_TRANSITIONS.labels("not_serving")


def record_readiness(serving: bool, was_serving: bool) -> None:
    """Called by the health reporter on every status it sets."""
    READY.set(1 if serving else 0)
    if serving != was_serving:
        READINESS_TRANSITIONS.labels("serving" if serving else "not_serving").inc()


# --------------------------------------------------------------------- databases (registry, orchestrator)
DB_OPERATION_SECONDS = Histogram(
    "modelserve_db_operation_seconds",
    "Time a unit of database work took: a pooled PostgreSQL connection held for a transaction or "
    "an autocommit block, or one SQLite statement (seconds).",
    ["dialect"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DB_ERRORS = Counter(
    "modelserve_db_errors_total",
    "Database work that failed: unavailable (unreachable, pool timeout, locked) or constraint.",
    ["dialect", "error"],
)
DB_POOL_IN_USE = Gauge(
    "modelserve_db_pool_in_use_connections", "PostgreSQL pool connections checked out right now."
)
DB_POOL_MAX = Gauge("modelserve_db_pool_max_connections", "The PostgreSQL pool's maximum size.")
for _dialect in ("postgresql", "sqlite"):
    for _error in ("unavailable", "constraint"):
        DB_ERRORS.labels(_dialect, _error)
