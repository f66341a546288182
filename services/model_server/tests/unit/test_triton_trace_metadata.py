"""The Triton hop carries the trace: the metadata of every call to Triton names the current span
as W3C ``traceparent`` (the key Triton's OpenTelemetry trace mode reads), next to the request id;
with tracing off it carries the request id only."""

from __future__ import annotations

import grpc
from opentelemetry import trace

from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.testing import memory_tracing
from modelserve_model_server.triton_pool import TritonPool


def test_triton_metadata_carries_the_current_span() -> None:
    provider, _ = memory_tracing()
    token = request_id_var.set("rid-1")
    try:
        assert TritonPool._metadata() == ((REQUEST_ID_HEADER, "rid-1"),)  # no span: no trace context
        # grpc.aio takes a Metadata as it is (a tuple costs it a typing.Sequence check + a copy per call)
        assert isinstance(TritonPool._metadata(), grpc.aio.Metadata)
        with provider.get_tracer("t").start_as_current_span("infer") as span:
            md = dict(TritonPool._metadata() or ())
    finally:
        request_id_var.reset(token)
    ctx = span.get_span_context()
    assert md[REQUEST_ID_HEADER] == "rid-1"
    version, trace_id, span_id, _flags = md["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        trace.format_trace_id(ctx.trace_id),
        trace.format_span_id(ctx.span_id),
    )
    assert TritonPool._metadata() is None  # neither a request id nor a span
