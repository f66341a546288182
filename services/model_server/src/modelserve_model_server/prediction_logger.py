"""Prediction logging (issue 18): the deployment's policy (``Deployment.prediction_logging``, from
the registry follower) decides which requests are logged; a sampled request/response pair becomes
a ``PredictionLog`` put on a bounded in-memory queue, and one background task writes the queue in
batches to a sink (the registry's ``WritePredictionLogs``: the platform's database).

Logging never blocks or fails inference: sampling is one random draw, building a record is local
work on the sampled request only (a failure there is counted and dropped), the queue is never
waited on (full: the record is dropped and counted), and a sink outage drops a batch after
``max_attempts`` tries (counted). Counters: ``modelserve_model_server_prediction_logs_total``
{outcome="sampled"|"written"} and ``modelserve_model_server_prediction_logs_dropped_total``
{reason="queue_full"|"sink_unavailable"|"encode_error"}. Requests routed to Triton by name do not
pass through this server's inference service and are not logged."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import numpy as np
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter, Gauge

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.context import current_request_id
from modelserve_common.tensors import BY_NAME, encode_bytes
from modelserve_model_server.settings import ModelServerSettings

log = structlog.get_logger(__name__)

LOGGED = Counter(
    "modelserve_model_server_prediction_logs_total",
    "Prediction log records by outcome (sampled: taken for logging; written: stored by the sink).",
    ["outcome"],
)
DROPPED = Counter(
    "modelserve_model_server_prediction_logs_dropped_total",
    "Prediction log records dropped (queue_full, sink_unavailable after the retries, encode_error).",
    ["reason"],
)

MAX_ERROR_CHARS = 1024
"""A failed request's error message and the request id are logged up to this many characters
(the registry refuses a whole batch holding a text over its REGISTRY_MAX_TEXT_BYTES, 4096 bytes
by default; 1024 characters of UTF-8 stay under it)."""

QUEUE_DEPTH = Gauge(
    "modelserve_model_server_prediction_log_queue_depth",
    "Sampled prediction records waiting for the writer (bounded by prediction_log_queue_size).",
)

Policy = registry_pb.PredictionLogging
PolicyLookup = Callable[[str], tuple[Policy, str] | None]
"""model -> (its deployment's policy, the tenant that owns it); None: not deployed."""

CALLER_TENANT: ContextVar[str | None] = ContextVar("modelserve_prediction_log_caller", default=None)
"""The tenant of the RPC being served (None: a trusted caller), set by the servicer. Only the
owner's and trusted callers' requests are logged: the owner reads the logs, so another tenant's
requests to a shared model are never logged."""


class Sink(Protocol):
    async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
        """Stores the records; raises on failure (the logger retries, then drops)."""
        ...


class RegistrySink:
    """The registry's WritePredictionLogs (the platform's database)."""

    def __init__(self, stub: registry_grpc.RegistryServiceStub, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
        await self._stub.WritePredictionLogs(
            registry_pb.WritePredictionLogsRequest(logs=records), timeout=self._timeout_s
        )


class Sampler:
    """One draw per request: true with probability ``ratio`` (exactly never at 0, always at 1)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def sample(self, ratio: float) -> bool:
        if ratio <= 0.0:
            return False
        return ratio >= 1.0 or self._rng.random() < ratio


def _raw(datatype: str, contents: pb.InferTensorContents) -> bytes:
    dt = BY_NAME.get(datatype)
    if dt is None or dt.contents_field is None:
        return b""
    values = getattr(contents, dt.contents_field)
    if dt.size == 0:
        return encode_bytes(list(values))
    return np.asarray(values, dtype=dt.dtype).tobytes()


def _size(datatype: str, contents: pb.InferTensorContents) -> int:
    """Bytes the typed contents take as raw, without converting them."""
    dt = BY_NAME.get(datatype)
    if dt is None or dt.contents_field is None:
        return 0
    values = getattr(contents, dt.contents_field)
    return sum(4 + len(v) for v in values) if dt.size == 0 else len(values) * dt.size


def _tensors(specs: Sequence[Any], raws: Sequence[bytes], cap: int) -> tuple[list[tensor_pb.Tensor], int]:
    """The tensors as logged and the bytes kept; over ``cap``: datatype and shape only (the size
    is known before any byte is copied)."""
    sizes = [len(raws[i]) if i < len(raws) else _size(t.datatype, t.contents) for i, t in enumerate(specs)]
    total = sum(sizes)
    out = []
    for i, t in enumerate(specs):
        logged = tensor_pb.Tensor(name=t.name, datatype=t.datatype, shape=list(t.shape))
        if total <= cap:
            logged.raw_contents = raws[i] if i < len(raws) else _raw(t.datatype, t.contents)
        out.append(logged)
    return out, total if total <= cap else 0


def build_record(
    policy: Policy,
    default_cap: int,
    model: str,
    version: int,
    request: pb.ModelInferRequest,
    response: pb.ModelInferResponse | None,
    error: str,
) -> registry_pb.PredictionLog:
    cap = policy.max_record_bytes or default_cap
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    record = registry_pb.PredictionLog(
        model=model,
        version=version,
        request_id=(current_request_id() or request.id)[:MAX_ERROR_CHARS],
        time=ts,
        error=error,
    )
    if policy.log_request:
        inputs, used = _tensors(request.inputs, request.raw_input_contents, cap)
        record.inputs.extend(inputs)
        cap = max(cap - used, 0)
    if policy.log_response and response is not None:
        record.outputs.extend(_tensors(response.outputs, response.raw_output_contents, cap)[0])
    return record


class PredictionLogger:
    """Samples by the model's policy, queues (bounded), writes batches in the background."""

    def __init__(
        self,
        sink: Sink,
        policies: PolicyLookup,
        *,
        queue_size: int = 10_000,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        default_max_record_bytes: int = 64 * 1024,
        sampler: Sampler | None = None,
    ) -> None:
        self._sink = sink
        self._policies = policies
        self._queue: asyncio.Queue[registry_pb.PredictionLog] = asyncio.Queue(queue_size)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._default_cap = default_max_record_bytes
        self._sampler = sampler or Sampler()
        self._task: asyncio.Task[None] | None = None
        self.counts: dict[str, int] = {
            "sampled": 0,
            "written": 0,
            "queue_full": 0,
            "sink_unavailable": 0,
            "encode_error": 0,
        }

    # -- the inference path --------------------------------------------------------------------
    async def observe(
        self,
        model: str,
        version: int,
        request: pb.ModelInferRequest,
        answer: Awaitable[pb.ModelInferResponse],
    ) -> pb.ModelInferResponse:
        """Awaits ``answer`` (the inference) and, when the policy samples this request, queues
        its record; what ``answer`` returns or raises passes through unchanged."""
        found = self._policies(model)
        caller = CALLER_TENANT.get()
        if found is None or (caller is not None and caller != found[1]):
            return await answer
        policy = found[0]
        if not self._sampler.sample(policy.sample_ratio):
            return await answer
        try:
            response = await answer
        except Exception as exc:
            message = (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]
            self._offer(policy, model, version, request, None, message)
            raise
        self._offer(policy, model, version, request, response, "")
        return response

    def _offer(
        self,
        policy: Policy,
        model: str,
        version: int,
        request: pb.ModelInferRequest,
        response: pb.ModelInferResponse | None,
        error: str,
    ) -> None:
        self._count("sampled")
        try:
            record = build_record(policy, self._default_cap, model, version, request, response, error)
        except Exception as exc:  # never fail inference for a log record
            log.warning("prediction_log.encode_failed", model=model, error=str(exc))
            self._count("encode_error")
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._count("queue_full")
        QUEUE_DEPTH.set(self._queue.qsize())

    def _count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n
        if what in ("sampled", "written"):
            LOGGED.labels(what).inc(n)
        else:
            DROPPED.labels(what).inc(n)

    # -- the background writer -----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stops the writer; what is still queued gets one write attempt (else counted dropped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(self._batch_size, self._queue.qsize()))]
            await self._write(batch, attempts=1)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._flush_interval_s
            while len(batch) < self._batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            QUEUE_DEPTH.set(self._queue.qsize())
            await self._write(batch, self._max_attempts)

    async def _write(self, batch: list[registry_pb.PredictionLog], attempts: int) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await self._sink.write(batch)
            except Exception as exc:  # any sink failure: retry, then drop and count
                log.warning(
                    "prediction_log.write_failed", attempt=attempt, records=len(batch), error=str(exc)
                )
                if attempt < attempts:
                    await asyncio.sleep(self._retry_backoff_s * attempt)
                continue
            self._count("written", len(batch))
            return
        self._count("sink_unavailable", len(batch))


def prediction_logger_for(
    settings: ModelServerSettings, stub: registry_grpc.RegistryServiceStub, policies: PolicyLookup
) -> PredictionLogger:
    """The logger the settings describe, writing to the registry."""
    return PredictionLogger(
        RegistrySink(stub, settings.prediction_log_write_timeout_s),
        policies,
        queue_size=settings.prediction_log_queue_size,
        batch_size=settings.prediction_log_batch_size,
        flush_interval_s=settings.prediction_log_flush_interval_s,
        max_attempts=settings.prediction_log_max_attempts,
        retry_backoff_s=settings.prediction_log_retry_backoff_s,
        default_max_record_bytes=settings.prediction_log_max_record_bytes,
    )
