"""Prediction logging (issue 18): the deployment's policy (``Deployment.prediction_logging``, from
the registry follower) decides which requests are logged; a sampled request/response pair becomes
a ``PredictionLog`` put on a bounded in-memory queue per sink, and one background task per sink
writes its queue in batches: the registry's ``WritePredictionLogs`` (the platform's database), a
JSON-lines file with size-based rotation, or CloudEvents over HTTP (prediction_sinks.py);
``MODEL_SERVER_PREDICTION_LOG_SINKS`` names one or several.

Logging never blocks or fails inference: sampling is one random draw, building a record is local
work on the sampled request only (a failure there is counted and dropped), the queues are never
waited on (full: the record is dropped and counted), and a sink outage drops a batch after
``max_attempts`` tries (counted). Counters: ``modelserve_model_server_prediction_logs_total``
{outcome="sampled"|"written"} and ``modelserve_model_server_prediction_logs_dropped_total``
{reason="queue_full"|"sink_unavailable"|"encode_error"} (with several sinks, written and the
sink drops count once per sink), and per sink
``modelserve_model_server_prediction_log_sink_records_total`` {sink, outcome}. Only the owner's and
trusted callers' requests are logged. ModelInfer requests the server forwards to Triton are logged
the same way (:meth:`PredictionLogger.observe_forwarded`, parsed only when sampled; a failed one
that names no version is logged under the version Triton last answered with for that model);
ModelStreamInfer streams forwarded to Triton are not."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import grpc
import numpy as np
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter, Gauge

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.context import caller_identity, current_request_id
from modelserve_common.tensors import BY_NAME, encode_bytes
from modelserve_common.wire import string_field
from modelserve_model_server.prediction_sinks import CloudEventsSink, JsonLinesSink
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

SINK_RECORDS = Counter(
    "modelserve_model_server_prediction_log_sink_records_total",
    "Prediction log records by sink (registry, jsonl, cloudevents) and outcome (written, queue_full, "
    "sink_unavailable): each sink has its own queue, so one sink's outage drops only its records.",
    ["sink", "outcome"],
)
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

    name = "registry"

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


class _Writer:
    """One sink's bounded queue, background task and counts."""

    def __init__(self, sink: Sink, queue_size: int) -> None:
        self.sink = sink
        self.name: str = getattr(sink, "name", type(sink).__name__)
        self.queue: asyncio.Queue[registry_pb.PredictionLog] = asyncio.Queue(queue_size)
        self.task: asyncio.Task[None] | None = None
        self.counts = {"written": 0, "queue_full": 0, "sink_unavailable": 0}


class PredictionLogger:
    """Samples by the model's policy, queues (bounded, one queue per sink), writes batches to each
    sink in the background."""

    def __init__(
        self,
        sink: Sink | Sequence[Sink],
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
        sinks = list(sink) if isinstance(sink, Sequence) else [sink]
        self._writers = [_Writer(s, queue_size) for s in sinks]
        self._policies = policies
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_attempts = max_attempts
        self._retry_backoff_s = retry_backoff_s
        self._default_cap = default_max_record_bytes
        self._sampler = sampler or Sampler()
        self._forwarded_versions: dict[str, int] = {}
        """Model (deployed, so bounded) -> the version Triton last answered a forwarded call with:
        the version a failed forwarded call without one is logged under."""
        self.counts: dict[str, int] = {
            "sampled": 0,
            "written": 0,
            "queue_full": 0,
            "sink_unavailable": 0,
            "encode_error": 0,
        }
        """Totals; with several sinks, written/queue_full/sink_unavailable count once per sink."""

    @property
    def sink_counts(self) -> dict[str, dict[str, int]]:
        """Per sink (by name): written, queue_full, sink_unavailable."""
        return {w.name: w.counts for w in self._writers}

    # -- the inference path --------------------------------------------------------------------
    def _policy_for(self, model: str, caller: str | None) -> tuple[Policy, str] | None:
        """The policy and owner when this request is to be logged (owner or trusted caller, and
        the sampler's draw says so); else None."""
        found = self._policies(model)
        if found is None or (caller is not None and caller != found[1]):
            return None
        return found if self._sampler.sample(found[0].sample_ratio) else None

    async def observe(
        self,
        model: str,
        version: int,
        request: pb.ModelInferRequest,
        answer: Awaitable[pb.ModelInferResponse],
    ) -> pb.ModelInferResponse:
        """Awaits ``answer`` (the inference) and, when the policy samples this request, queues
        its record; what ``answer`` returns or raises passes through unchanged."""
        found = self._policy_for(model, CALLER_TENANT.get())
        if found is None:
            return await answer
        policy, owner = found
        try:
            response = await answer
        except Exception as exc:
            message = (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]
            self._offer(policy, owner, model, version, request, None, message)
            raise
        self._offer(policy, owner, model, version, request, response, "")
        return response

    async def observe_forwarded(
        self, request: bytes, answer: Awaitable[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """:meth:`observe` for a ModelInfer the server forwards undecoded (to Triton): the same
        policy and owner-only rule; the bytes are parsed only for a sampled request."""
        model = string_field(request, 1)
        if self._policies(model) is None:  # not deployed: no metadata scan
            return await answer
        caller, _scopes = caller_identity(context.invocation_metadata())
        found = self._policy_for(model, caller)
        if found is None:
            return await answer
        policy, owner = found
        try:
            reply = await answer
        except Exception as exc:
            self._offer_forwarded(policy, owner, model, request, None, (str(exc) or type(exc).__name__))
            raise
        self._offer_forwarded(policy, owner, model, request, reply, "")
        return reply

    def _offer_forwarded(
        self, policy: Policy, owner: str, model: str, request: bytes, reply: bytes | None, error: str
    ) -> None:
        try:
            parsed = pb.ModelInferRequest.FromString(request)
            response = pb.ModelInferResponse.FromString(reply) if reply is not None else None
        except Exception as exc:  # never fail inference for a log record
            log.warning("prediction_log.encode_failed", model=model, error=str(exc))
            self._count("sampled")
            self._count("encode_error")
            return
        served = response.model_version if response is not None else parsed.model_version
        if served.isdigit():
            version = int(served)
            if response is not None:
                self._forwarded_versions[model] = version
        else:  # a failed call without a version: the version Triton last answered with
            version = self._forwarded_versions.get(model, 0)
        if version <= 0:
            log.warning("prediction_log.version_unknown", model=model)
            self._count("sampled")
            self._count("encode_error")
            return
        self._offer(policy, owner, model, version, parsed, response, error[:MAX_ERROR_CHARS])

    def _offer(
        self,
        policy: Policy,
        owner: str,
        model: str,
        version: int,
        request: pb.ModelInferRequest,
        response: pb.ModelInferResponse | None,
        error: str,
    ) -> None:
        self._count("sampled")
        try:
            record = build_record(policy, self._default_cap, model, version, request, response, error)
            record.tenant = owner  # output only for the registry (it sets the owner itself)
        except Exception as exc:  # never fail inference for a log record
            log.warning("prediction_log.encode_failed", model=model, error=str(exc))
            self._count("encode_error")
            return
        for writer in self._writers:
            try:
                writer.queue.put_nowait(record)
            except asyncio.QueueFull:
                self._count("queue_full", writer=writer)
        QUEUE_DEPTH.set(self.queued)

    def _count(self, what: str, n: int = 1, writer: _Writer | None = None) -> None:
        self.counts[what] += n
        if what in ("sampled", "written"):
            LOGGED.labels(what).inc(n)
        else:
            DROPPED.labels(what).inc(n)
        if writer is not None:
            writer.counts[what] += n
            SINK_RECORDS.labels(writer.name, what).inc(n)

    # -- the background writers ----------------------------------------------------------------
    def start(self) -> None:
        for writer in self._writers:
            if writer.task is None:
                writer.task = asyncio.create_task(self._run(writer))

    async def close(self) -> None:
        """Stops the writers; what is still queued gets one write attempt (else counted dropped)."""
        for writer in self._writers:
            if writer.task is not None:
                writer.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer.task
                writer.task = None
        for writer in self._writers:
            queue = writer.queue
            while not queue.empty():
                batch = [queue.get_nowait() for _ in range(min(self._batch_size, queue.qsize()))]
                await self._write(writer, batch, attempts=1)
            aclose = getattr(writer.sink, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    @property
    def queued(self) -> int:
        return sum(w.queue.qsize() for w in self._writers)

    async def _run(self, writer: _Writer) -> None:
        loop = asyncio.get_running_loop()
        queue = writer.queue
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self._flush_interval_s
            while len(batch) < self._batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            QUEUE_DEPTH.set(self.queued)
            await self._write(writer, batch, self._max_attempts)

    async def _write(self, writer: _Writer, batch: list[registry_pb.PredictionLog], attempts: int) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await writer.sink.write(batch)
            except Exception as exc:  # any sink failure: retry, then drop and count
                log.warning(
                    "prediction_log.write_failed",
                    sink=writer.name,
                    attempt=attempt,
                    records=len(batch),
                    error=str(exc),
                )
                if attempt < attempts:
                    await asyncio.sleep(self._retry_backoff_s * attempt)
                continue
            self._count("written", len(batch), writer)
            return
        self._count("sink_unavailable", len(batch), writer)


def prediction_logger_for(
    settings: ModelServerSettings, stub: registry_grpc.RegistryServiceStub, policies: PolicyLookup
) -> PredictionLogger:
    """The logger the settings describe, writing to the sinks ``prediction_log_sinks`` names."""
    sinks: list[Sink] = []
    for name in settings.prediction_log_sink_names():
        if name == "registry":
            sinks.append(RegistrySink(stub, settings.prediction_log_write_timeout_s))
        elif name == "jsonl":
            sinks.append(
                JsonLinesSink(
                    settings.prediction_log_jsonl_file(),
                    settings.prediction_log_jsonl_max_bytes,
                    settings.prediction_log_jsonl_backups,
                )
            )
        elif name == "cloudevents":
            sinks.append(
                CloudEventsSink(
                    settings.prediction_log_cloudevents_url,
                    source=settings.prediction_log_cloudevents_source,
                    batched=settings.prediction_log_cloudevents_batched,
                    timeout_s=settings.prediction_log_write_timeout_s,
                )
            )
    return PredictionLogger(
        sinks,
        policies,
        queue_size=settings.prediction_log_queue_size,
        batch_size=settings.prediction_log_batch_size,
        flush_interval_s=settings.prediction_log_flush_interval_s,
        max_attempts=settings.prediction_log_max_attempts,
        retry_backoff_s=settings.prediction_log_retry_backoff_s,
        default_max_record_bytes=settings.prediction_log_max_record_bytes,
    )
