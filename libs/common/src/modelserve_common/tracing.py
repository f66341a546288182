"""OpenTelemetry tracing: a TracerProvider built from settings and returned (never a module
global), plus the few helpers every hop shares to keep one trace per request.

- The OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables; the batch processor
  reads ``OTEL_BSP_*`` (``OTEL_BSP_SCHEDULE_DELAY`` in ms); the sampler reads ``OTEL_TRACES_SAMPLER``
  / ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``; ``parentbased_traceidratio``
  with ``0.01`` samples 1 % of new traces and follows the caller's decision otherwise).
- Context travels as W3C ``traceparent``/``tracestate``: in gRPC metadata (the client interceptor
  of :func:`modelserve_common.channels.create_channel` injects it, the server interceptor of the
  chain extracts it; Triton's OpenTelemetry mode reads the same keys), in REST headers (the
  gateway), and stored with an asynchronous execution so its spans link to the creating request.
- Answers carry the trace id: ``x-trace-id`` in gRPC trailing metadata (the chain adds it) and the
  REST headers ``traceparent`` and ``x-trace-id`` (the gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelserve_common.config import BaseServiceSettings

TRACE_ID_HEADER = "x-trace-id"
"""The trace id (32 hex digits) of the request, in REST response headers and gRPC trailers."""
TRACEPARENT = "traceparent"
_TRACE_KEYS = (TRACEPARENT, "tracestate")

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(settings: BaseServiceSettings) -> TracerProvider | None:
    """Returns a provider exporting over OTLP when tracing is enabled, else None (tracing off)."""
    if not settings.tracing_enabled:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def trace_id_of(ctx: SpanContext) -> str | None:
    """The 32-hex-digit trace id of a valid span context, else None."""
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def current_trace_id() -> str | None:
    """The trace id of the current span (None when tracing is off or no span is current)."""
    return trace_id_of(trace.get_current_span().get_span_context())


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``); empty when
    there is no valid span. Stored with an asynchronous execution to link its spans."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str]) -> Context | None:
    """The parent context an incoming W3C ``traceparent`` header names (None if absent/invalid)."""
    if TRACEPARENT not in headers:
        return None
    ctx = _PROPAGATOR.extract({k: headers[k] for k in (TRACEPARENT, "tracestate") if k in headers})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def links_from(carrier: Mapping[str, str]) -> list[Link]:
    """A link to the span a stored carrier names (an execution's creating request), or none."""
    ctx = extract_context(carrier)
    if ctx is None:
        return []
    return [Link(trace.get_current_span(ctx).get_span_context(), {"link.kind": "created_by"})]


def response_headers(span: trace.Span) -> list[tuple[str, str]]:
    """``traceparent`` (of ``span``) and ``x-trace-id`` for a REST answer; empty if not recording."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return [(TRACEPARENT, carrier[TRACEPARENT]), (TRACE_ID_HEADER, trace.format_trace_id(ctx.trace_id))]


def _traced_details(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """``details`` with the current context as ``traceparent``/``tracestate`` (replacing any the
    caller forwarded, so the callee's parent is this hop's client span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    md = [(k, v) for k, v in (details.metadata or ()) if k not in _TRACE_KEYS]
    md.extend(carrier.items())
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*md), details.credentials, details.wait_for_ready
    )


_FINISHING: set[asyncio.Future[None]] = set()
"""Span-ending tasks still running (held so they are not garbage-collected half way)."""


def _keep(task: asyncio.Future[None]) -> None:
    _FINISHING.add(task)
    task.add_done_callback(_FINISHING.discard)


async def _finish(span: trace.Span, call: Any) -> None:
    try:
        code = await call.code()
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code != grpc.StatusCode.OK:
            span.set_status(trace.StatusCode.ERROR, f"{code.name}: {await call.details()}"[:300])
    finally:
        span.end()


async def _relay(span: trace.Span, call: Any) -> AsyncIterator[Any]:
    try:
        async for reply in call:
            yield reply
    except BaseException as exc:
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300])
        raise
    finally:
        if call.done() and not call.cancelled():
            await _finish(span, call)
        else:
            span.end()


class _ClientSpans:
    """One CLIENT span per outgoing call, ended when the call ends whatever its status (the
    OpenTelemetry aio client interceptor leaves the span of a failed unary call open, so it is
    never exported and the callee's spans dangle), with the context injected as W3C metadata.
    One subclass per arity below: grpc.aio files an interceptor under the first interceptor kind
    it is an instance of, so one object inheriting all four would intercept unary calls only."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("modelserve.grpc.client")

    async def _call(self, continuation: Any, details: Any, request: Any, streamed: bool = False) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, _, name = method.lstrip("/").partition("/")
        span = self._tracer.start_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                call = await continuation(_traced_details(details), request)
        except BaseException as exc:
            if isinstance(exc, grpc.aio.AioRpcError):
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
            span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300])
            span.end()
            raise
        if streamed:  # the span ends with the stream (grpc.aio takes an iterator from here)
            return _relay(span, call)
        call.add_done_callback(lambda c: _keep(asyncio.ensure_future(_finish(span, c))))
        return call

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request, streamed=True)

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, details, request_iterator)

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, details, request_iterator, streamed=True)


class _UnaryUnarySpans(_ClientSpans, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    pass


class _UnaryStreamSpans(_ClientSpans, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    pass


class _StreamUnarySpans(_ClientSpans, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    pass


class _StreamStreamSpans(_ClientSpans, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    pass


def client_interceptors(provider: TracerProvider) -> list[Any]:
    """The tracing interceptors of :func:`modelserve_common.channels.create_channel` (outermost),
    one per arity."""
    return [
        cls(provider) for cls in (_UnaryUnarySpans, _UnaryStreamSpans, _StreamUnarySpans, _StreamStreamSpans)
    ]
