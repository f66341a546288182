"""The model server's Triton-hop metrics (per-model inference metrics are in stats.py, the failed
model gauge in model_index.py, artifact cache metrics in cache.py; the gRPC server, readiness and
client metrics come from modelserve_common.metrics).

Labels are bounded: ``code`` is a gRPC status name (or CANCELLED when our caller went away).
Every series exists from start-up (zero), with or without Triton configured. Triton's own metrics
(nv_inference_*, on Triton's metrics port) describe what happens inside Triton; these describe the
hop to it as the model server sees it (network, queueing at Triton, ejections)."""

from __future__ import annotations

import grpc
from prometheus_client import Counter, Gauge, Histogram

from modelserve_model_server.cache import CACHE_EVENTS

TRITON_REQUESTS = Counter(
    "modelserve_model_server_triton_requests_total",
    "Calls forwarded to Triton (unary calls and streams), by final gRPC code.",
    ["code"],
)
TRITON_REQUEST_SECONDS = Histogram(
    "modelserve_model_server_triton_request_seconds",
    "Latency of unary calls forwarded to Triton, retries on another replica included (seconds).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRITON_EJECTIONS = Counter(
    "modelserve_model_server_triton_replica_ejections_total",
    "Triton replicas ejected after failing a health probe (which one: the triton.replica_ejected log line).",
)
TRITON_REPLICAS_AVAILABLE = Gauge(
    "modelserve_model_server_triton_replicas_available", "Triton replicas not ejected right now."
)
for _code in grpc.StatusCode:
    TRITON_REQUESTS.labels(_code.name)
for _event in ("hit", "miss", "eviction"):  # every series from start-up (dashboards, alerts)
    CACHE_EVENTS.labels(_event)
