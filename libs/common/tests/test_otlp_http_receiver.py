"""The OTLP/HTTP test receiver (modelserve_common.testing.tracing.OtlpHttpReceiver) over real HTTP:
spans from the OpenTelemetry SDK encoded as the OTLP/HTTP exporter encodes them (protobuf, gzip or
not) and as OTLP/JSON (hex ids) are kept with their ids, parents and events; another path is 404,
a body that does not parse is 400."""

from __future__ import annotations

import gzip
import json

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve_common.testing.tracing import OtlpHttpReceiver


def _spans() -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({SERVICE_NAME: "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as inner:
        inner.add_event("ev")
    return list(exporter.get_finished_spans())


def test_protobuf_gzip_and_json_bodies_are_kept() -> None:
    spans = _spans()
    inner, outer = spans
    body = encode_spans(spans).SerializeToString()
    with OtlpHttpReceiver() as receiver:
        with httpx.Client(timeout=5) as client:
            plain = client.post(
                receiver.url, content=body, headers={"content-type": "application/x-protobuf"}
            )
            zipped = client.post(
                receiver.url,
                content=gzip.compress(body),
                headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
            )
            doc = {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                        "parentSpanId": "00f067aa0ba902b7",
                                        "name": "from-json",
                                    }
                                ]
                            }
                        ],
                    }
                ]
            }
            as_json = client.post(
                receiver.url, content=json.dumps(doc), headers={"content-type": "application/json"}
            )
            elsewhere = client.post(f"{receiver.endpoint}/v1/metrics", content=body)
            garbage = client.post(
                receiver.url, content=b"\xff\x00garbage", headers={"content-type": "application/x-protobuf"}
            )
        assert [r.status_code for r in (plain, zipped, as_json)] == [200, 200, 200]
        assert (elsewhere.status_code, garbage.status_code) == (404, 400)
        assert receiver.requests == 3
        got = receiver.spans()
    trace_id = trace.format_trace_id(inner.context.trace_id)
    kept = [s for s in got if s.trace_id == trace_id]
    assert len(kept) == 4  # two spans, twice
    by_name = {s.name: s for s in kept}
    assert by_name["inner"].parent_id == trace.format_span_id(outer.context.span_id)
    assert by_name["inner"].events == ["ev"] and by_name["outer"].parent_id == ""
    assert {s.service for s in kept} == {"svc"}
    (js,) = [s for s in got if s.name == "from-json"]
    assert (js.service, js.trace_id, js.span_id, js.parent_id) == (
        "js",
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "00f067aa0ba902b7",
    )
