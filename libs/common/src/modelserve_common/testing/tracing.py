"""Tracing for tests: an in-memory provider, a real OTLP/gRPC receiver and a real OTLP/HTTP
receiver (protobuf or JSON bodies; Triton's OpenTelemetry trace mode exports OTLP/HTTP)."""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def memory_tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider whose spans land in an in-memory exporter (for assertions)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class OtlpReceiver:
    """A real OTLP/gRPC TraceService (from the ``opentelemetry-proto`` package) on a free loopback
    port, keeping every span it is sent. ``endpoint`` is what OTEL_EXPORTER_OTLP_ENDPOINT takes.
    Use as a context manager (starts and stops a grpc server with its own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts_pb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc

        receiver = self

        class _Service(ts_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                receiver._keep(request)
                return ts_pb.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ts_grpc.add_TraceServiceServicer_to_server(_Service(), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    def _keep(self, request: Any) -> None:
        got = []
        for rs in request.resource_spans:
            service = next(
                (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), ""
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            service=service,
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            events=[e.name for e in s.events],
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        )
                    )
        with self._lock:
            self._spans.extend(got)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.trace_id == trace_id]


class OtlpHttpReceiver(OtlpReceiver):
    """A real OTLP/HTTP trace receiver (``POST /v1/traces``, ``application/x-protobuf`` or
    ``application/json``, gzip or not) on a free loopback port, keeping every span it is sent.
    ``url`` is the full traces URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; Triton's
    ``--trace-config opentelemetry,url=`` takes ``url`` without the scheme). ``requests`` counts
    the export requests. Use as a context manager (a threaded HTTP server of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.endpoint}/v1/traces"

    def __enter__(self) -> OtlpHttpReceiver:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts_pb

        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding", "") == "gzip":
                    body = gzip.decompress(body)
                if self.path.split("?")[0] != "/v1/traces":
                    self._answer(404, b"", "text/plain")
                    return
                request = ts_pb.ExportTraceServiceRequest()
                json_body = self.headers.get("content-type", "").startswith("application/json")
                try:
                    if json_body:
                        json_format.Parse(body, request, ignore_unknown_fields=True)
                    else:
                        request.ParseFromString(body)
                except Exception:
                    self._answer(400, b"", "text/plain")
                    return
                if json_body:  # OTLP/JSON carries ids as hex strings: parsed as base64, so redo
                    _hex_ids(request, body)
                with receiver._lock:
                    receiver.requests += 1
                receiver._keep(request)
                reply = ts_pb.ExportTraceServiceResponse()
                if json_body:
                    self._answer(200, json_format.MessageToJson(reply).encode(), "application/json")
                else:
                    self._answer(200, reply.SerializeToString(), "application/x-protobuf")

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="otlp-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _hex_ids(request: Any, body: bytes) -> None:
    """OTLP/JSON encodes trace and span ids as hex (not proto3 JSON's base64): set them again."""
    import json

    doc = json.loads(body)
    for rs, rs_doc in zip(request.resource_spans, doc.get("resourceSpans", []), strict=False):
        for ss, ss_doc in zip(rs.scope_spans, rs_doc.get("scopeSpans", []), strict=False):
            for span, span_doc in zip(ss.spans, ss_doc.get("spans", []), strict=False):
                span.trace_id = bytes.fromhex(span_doc.get("traceId", ""))
                span.span_id = bytes.fromhex(span_doc.get("spanId", ""))
                span.parent_span_id = bytes.fromhex(span_doc.get("parentSpanId", ""))


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    events: list[str]
    links: list[tuple[str, str]]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None
