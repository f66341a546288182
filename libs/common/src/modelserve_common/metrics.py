"""Prometheus metrics: the standard gRPC server metrics (the names py-grpc-prometheus uses) and the
exposition endpoint on its own port. Domain metrics live in each service, named
``modelserve_<service>_<thing>_<unit>``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

GRPC_SERVER_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SERVER_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server (seconds).",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRPC_SERVER_IN_FLIGHT = Gauge(
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
