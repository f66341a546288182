"""The registry's domain metrics (the gRPC server, database and readiness metrics come from
modelserve_common.metrics). Labels are bounded: kinds and change types are our own enums."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WRITES = Counter(
    "modelserve_registry_writes_total",
    "Changes recorded (one per created, updated or deleted resource), by resource kind and change type.",
    ["kind", "change_type"],
)
WATCH_STREAMS = Gauge("modelserve_registry_watch_streams", "Watch streams open right now.")
WATCH_LAG_SECONDS = Histogram(
    "modelserve_registry_watch_lag_seconds",
    "Time from a change's commit to its being sent on a Watch stream (seconds).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
