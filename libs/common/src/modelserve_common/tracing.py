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

from collections.abc import Mapping

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
