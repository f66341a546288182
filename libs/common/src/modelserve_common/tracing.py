"""OpenTelemetry tracing: a TracerProvider built from settings and returned (never a module
global). The OTLP exporter reads the standard OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from modelserve_common.config import BaseServiceSettings


def configure_tracing(settings: BaseServiceSettings) -> TracerProvider | None:
    """Returns a provider exporting over OTLP when tracing is enabled, else None (tracing off)."""
    if not settings.tracing_enabled:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
