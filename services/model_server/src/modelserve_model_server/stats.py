"""Per model-version statistics in the shape Triton reports (ModelStatistics), and the Prometheus
metrics a user reads to see why batching did or did not happen.

Everything per request is an integer add; histograms are observed once per request (queue time)
or once per batch (compute time, batch size). Queue depth and in-flight are read at scrape time.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field

from prometheus_client import Gauge

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.loopmetrics import Counter, Histogram  # per request: lock-free, on the loop

_LABELS = ["model", "version"]
_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)

REQUESTS = Counter(
    "modelserve_model_server_requests_total",
    "Inference requests by model, version and outcome "
    "(success, invalid, rejected, timeout, cancelled, error).",
    [*_LABELS, "outcome"],
)
QUEUE_SECONDS = Histogram(
    "modelserve_model_server_queue_seconds",
    "Time a request waited in the model's queue before its batch ran (seconds).",
    _LABELS,
    buckets=_FAST,
)
COMPUTE_SECONDS = Histogram(
    "modelserve_model_server_compute_seconds",
    "Time one batch spent in the model (seconds).",
    _LABELS,
    buckets=_FAST,
)
BATCH_SIZE = Histogram(
    "modelserve_model_server_batch_size",
    "Rows per executed batch (the realised batch size).",
    _LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_DEPTH = Gauge("modelserve_model_server_queue_depth", "Requests waiting in the model's queue.", _LABELS)
IN_FLIGHT = Gauge(
    "modelserve_model_server_in_flight", "Requests of the model queued or executing right now.", _LABELS
)
DROPPED = Counter(
    "modelserve_model_server_dropped_total",
    "Requests dropped before they started, by reason: cancelled (the caller went away while "
    "queued), deadline (the caller's gRPC deadline passed first), queue_timeout (the model's "
    "queue policy timeout). Each is also a failed request in ModelStatistics.",
    [*_LABELS, "reason"],
)
LOADED = Gauge("modelserve_model_server_model_ready", "1 while the model version is ready.", _LABELS)


class Duration:
    """count + total nanoseconds."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_pb(self) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=self.count, ns=self.ns)


# Bucket bounds of the statistics' duration histograms: 25 µs to about 105 s, four per doubling
# (a percentile read from them is within 19 % of the true value, less with interpolation).
HISTOGRAM_BOUNDS_NS = tuple(round(25_000 * 2 ** (k / 4)) for k in range(4 * 22 + 1))


class HistogramDuration(Duration):
    """count + total nanoseconds + events per bucket of :data:`HISTOGRAM_BOUNDS_NS` (what the
    statistics' ``success_histogram``/``queue_histogram`` carry, for percentiles)."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        super().__init__()
        self.buckets = [0] * (len(HISTOGRAM_BOUNDS_NS) + 1)

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns
        self.buckets[bisect_left(HISTOGRAM_BOUNDS_NS, ns)] += count

    def histogram_pb(self) -> pb.DurationHistogram:
        return pb.DurationHistogram(bounds_ns=HISTOGRAM_BOUNDS_NS, counts=self.buckets)


@dataclass
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class ModelStats:
    """Statistics and metric children of one model version."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self.success = HistogramDuration()
        self.fail = Duration()
        self.queue = HistogramDuration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.batches: dict[int, BatchStats] = {}
        self._outcomes = {o: REQUESTS.labels(model, version, o) for o in _OUTCOMES}
        self.success_counter = self._outcomes["success"]
        self._dropped = {r: DROPPED.labels(model, version, r) for r in DROP_REASONS}
        self.queue_hist = QUEUE_SECONDS.labels(model, version)
        self.compute_hist = COMPUTE_SECONDS.labels(model, version)
        self.batch_hist = BATCH_SIZE.labels(model, version)
        self.queue_depth = QUEUE_DEPTH.labels(model, version)
        self.in_flight = IN_FLIGHT.labels(model, version)
        self.ready = LOADED.labels(model, version)

    def outcome(self, outcome: str) -> None:
        self._outcomes[outcome].inc()

    def dropped(self, reason: str) -> None:
        """A request dropped before it started (``reason`` in :data:`DROP_REASONS`)."""
        self._dropped[reason].inc()

    def queued(self, ns: int) -> None:
        """A request waited ``ns`` in the queue before its batch ran (one call on the request
        path instead of two)."""
        q = self.queue
        q.count += 1
        q.ns += ns
        q.buckets[bisect_left(HISTOGRAM_BOUNDS_NS, ns)] += 1
        self.queue_hist.observe(ns / 1e9)

    def succeeded(self, ns: int) -> None:
        """A request answered successfully after ``ns``."""
        s = self.success
        s.count += 1
        s.ns += ns
        s.buckets[bisect_left(HISTOGRAM_BOUNDS_NS, ns)] += 1
        self.success_counter.inc()

    def ran(self, n: int, size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """A batch of ``n`` requests and ``size`` rows ran: each request's share of the compute
        phases, and the batch itself (:meth:`batch`)."""
        ci, cf, co = self.compute_input, self.compute_infer, self.compute_output
        ci.count += n
        ci.ns += input_ns * n
        cf.count += n
        cf.ns += infer_ns * n
        co.count += n
        co.ns += output_ns * n
        self.batch(size, input_ns, infer_ns, output_ns)

    def batch(self, size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One executed batch of ``size`` rows."""
        self.execution_count += 1
        self.inference_count += size
        self.last_inference_ms = time.time_ns() // 1_000_000
        b = self.batches.get(size)
        if b is None:
            b = self.batches[size] = BatchStats()
        b.compute_input.add(input_ns)
        b.compute_infer.add(infer_ns)
        b.compute_output.add(output_ns)
        self.compute_hist.observe((input_ns + infer_ns + output_ns) / 1e9)
        self.batch_hist.observe(size)

    def to_pb(self) -> pb.ModelStatistics:
        return pb.ModelStatistics(
            name=self.model,
            version=self.version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            inference_stats=pb.InferStatistics(
                success=self.success.to_pb(),
                fail=self.fail.to_pb(),
                queue=self.queue.to_pb(),
                compute_input=self.compute_input.to_pb(),
                compute_infer=self.compute_infer.to_pb(),
                compute_output=self.compute_output.to_pb(),
                cache_hit=pb.StatisticDuration(),
                cache_miss=pb.StatisticDuration(),
            ),
            batch_stats=[
                pb.InferBatchStatistics(
                    batch_size=size,
                    compute_input=b.compute_input.to_pb(),
                    compute_infer=b.compute_infer.to_pb(),
                    compute_output=b.compute_output.to_pb(),
                )
                for size, b in sorted(self.batches.items())
            ],
            success_histogram=self.success.histogram_pb(),
            queue_histogram=self.queue.histogram_pb(),
        )


_OUTCOMES = ("success", "invalid", "rejected", "timeout", "cancelled", "error")
DROP_REASONS = ("cancelled", "deadline", "queue_timeout")
