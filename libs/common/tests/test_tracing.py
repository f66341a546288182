"""Tracing: the provider exports to a real OTLP/gRPC receiver; the server chain continues an incoming
W3C traceparent and answers with the trace id in trailing metadata; the channel factory carries the
caller's context; stored carriers become links; bad traceparents start a new trace."""

from __future__ import annotations

import asyncio
import io
import json
import time

import grpc
import pytest
import structlog
from helpers import SERVICE, ProbeServicer, probe_service
from opentelemetry import trace

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from modelserve_common.channels import create_channel
from modelserve_common.config import BaseServiceSettings
from modelserve_common.context import TENANT_HEADER
from modelserve_common.logging import configure_logging
from modelserve_common.server import grpc_server
from modelserve_common.testing import memory_tracing
from modelserve_common.testing.tracing import OtlpReceiver
from modelserve_common.tracing import (
    TRACE_ID_HEADER,
    configure_tracing,
    current_carrier,
    current_trace_id,
    extract_context,
    links_from,
    response_headers,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


def settings(**kw: object) -> BaseServiceSettings:
    base: dict[str, object] = {"grpc_host": "127.0.0.1", "grpc_port": 0, "shutdown_grace_s": 2.0}
    base.update(kw)
    return BaseServiceSettings(**base)  # type: ignore[arg-type]


def test_spans_reach_a_real_otlp_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        assert configure_tracing(settings(service_name="probe")) is None  # tracing off by default
        provider = configure_tracing(settings(service_name="probe", tracing_enabled=True))
        assert provider is not None
        try:
            with provider.get_tracer("t").start_as_current_span("outer"):
                with provider.get_tracer("t").start_as_current_span("inner"):
                    tid = current_trace_id()
            assert provider.force_flush(10_000)
            deadline = time.monotonic() + 10
            while len(receiver.trace(tid or "")) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            provider.shutdown()
        spans = {s.name: s for s in receiver.trace(tid or "")}
        assert set(spans) == {"outer", "inner"}
        assert spans["inner"].parent_id == spans["outer"].span_id
        assert spans["outer"].parent_id == ""
        assert spans["outer"].service == "probe"


async def test_chain_continues_incoming_traceparent_and_answers_the_trace_id() -> None:
    provider, exported = memory_tracing()
    async with grpc_server(settings(), [probe_service(ProbeServicer())], tracer_provider=provider) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            call = pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(
                pb.ModelReadyRequest(name="m"),
                metadata=(("traceparent", TRACEPARENT), (TENANT_HEADER, "acme")),
                timeout=10,
            )
            await call
            trailing = dict(await call.trailing_metadata() or ())
    assert trailing[TRACE_ID_HEADER] == TRACE
    (span,) = [s for s in exported.get_finished_spans() if s.name == f"/{SERVICE}/ModelReady"]
    assert span.kind == trace.SpanKind.SERVER
    assert trace.format_trace_id(span.context.trace_id) == TRACE
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT
    assert span.attributes is not None and span.attributes["modelserve.tenant"] == "acme"


async def test_channel_carries_the_callers_context_to_the_server() -> None:
    server_provider, server_spans = memory_tracing()
    client_provider, client_spans = memory_tracing()
    s = settings()
    async with grpc_server(s, [probe_service(ProbeServicer())], tracer_provider=server_provider) as srv:
        ch = create_channel(f"127.0.0.1:{srv.port}", s, tracer_provider=client_provider)
        try:
            with client_provider.get_tracer("t").start_as_current_span("caller") as caller:
                call = pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(
                    pb.ModelReadyRequest(name="m"), timeout=10
                )
                await call
                trailing = dict(await call.trailing_metadata() or ())
        finally:
            await ch.close()
    tid = trace.format_trace_id(caller.get_span_context().trace_id)
    assert trailing[TRACE_ID_HEADER] == tid
    (client,) = [x for x in client_spans.get_finished_spans() if x.kind == trace.SpanKind.CLIENT]
    (server,) = [x for x in server_spans.get_finished_spans() if x.kind == trace.SpanKind.SERVER]
    assert client.parent is not None and client.parent.span_id == caller.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == caller.get_span_context().trace_id


async def test_failed_and_streaming_calls_end_their_client_spans() -> None:
    """A failed unary call and a stream both export their client span (parent of the server's)
    with the final status; a span left open would never be exported and the trace would dangle."""
    server_provider, server_spans = memory_tracing()
    client_provider, client_spans = memory_tracing()
    s = settings()
    async with grpc_server(s, [probe_service(ProbeServicer())], tracer_provider=server_provider) as srv:
        ch = create_channel(f"127.0.0.1:{srv.port}", s, tracer_provider=client_provider)
        try:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            with client_provider.get_tracer("t").start_as_current_span("caller"):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.ModelReady(pb.ModelReadyRequest(name="raise:NotFound"), timeout=10)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
                stream = stub.ModelStreamInfer(
                    iter([pb.ModelInferRequest(id="1"), pb.ModelInferRequest(id="2")]), timeout=10
                )
                assert [r.infer_response.id async for r in stream] == ["1", "2"]
            deadline = time.monotonic() + 10
            while len(client_spans.get_finished_spans()) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        finally:
            await ch.close()
    clients = {x.name: x for x in client_spans.get_finished_spans() if x.kind == trace.SpanKind.CLIENT}
    servers = {x.name: x for x in server_spans.get_finished_spans() if x.kind == trace.SpanKind.SERVER}
    ready, stream_name = f"/{SERVICE}/ModelReady", f"/{SERVICE}/ModelStreamInfer"
    assert set(clients) == {ready, stream_name}
    assert clients[ready].status.status_code == trace.StatusCode.ERROR
    assert clients[ready].attributes is not None
    assert clients[ready].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert clients[stream_name].status.status_code == trace.StatusCode.UNSET
    # the server spans carry the final code too (the chain's error mapping ran inside them)
    assert servers[ready].status.status_code == trace.StatusCode.ERROR
    assert servers[ready].attributes is not None
    assert servers[ready].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert servers[stream_name].attributes is not None
    assert servers[stream_name].attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    for name in (ready, stream_name):
        parent = servers[name].parent
        assert parent is not None and parent.span_id == clients[name].context.span_id


async def test_health_checks_are_not_traced() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    provider, exported = memory_tracing()
    async with grpc_server(settings(), [probe_service(ProbeServicer())], tracer_provider=provider) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            await pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="m"), timeout=10)
    assert [x.name for x in exported.get_finished_spans()] == [f"/{SERVICE}/ModelReady"]


async def test_untraced_server_answers_without_a_trace_id() -> None:
    async with grpc_server(settings(), [probe_service(ProbeServicer())]) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            call = pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(
                pb.ModelReadyRequest(name="m"), metadata=(("traceparent", TRACEPARENT),), timeout=10
            )
            await call
            trailing = dict(await call.trailing_metadata() or ())
    assert TRACE_ID_HEADER not in trailing and "x-request-id" in trailing


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{PARENT}-01",
    ],
)
def test_invalid_traceparent_is_ignored(header: str) -> None:
    assert extract_context({"traceparent": header}) is None
    assert links_from({"traceparent": header}) == []


def test_carrier_round_trip_and_links() -> None:
    provider, _ = memory_tracing()
    assert current_carrier() == {} and current_trace_id() is None  # no span: nothing to store
    with provider.get_tracer("t").start_as_current_span("creator") as creator:
        carrier = current_carrier()
    ctx = creator.get_span_context()
    assert carrier["traceparent"].startswith(
        f"00-{trace.format_trace_id(ctx.trace_id)}-{trace.format_span_id(ctx.span_id)}-"
    )
    (link,) = links_from(carrier)
    assert link.context.trace_id == ctx.trace_id and link.context.span_id == ctx.span_id
    headers = dict(response_headers(creator))
    assert headers == {
        "traceparent": carrier["traceparent"],
        TRACE_ID_HEADER: trace.format_trace_id(ctx.trace_id),
    }
    assert response_headers(trace.INVALID_SPAN) == []
    parent = extract_context({"traceparent": TRACEPARENT})
    assert parent is not None
    with provider.get_tracer("t").start_as_current_span("child", context=parent):
        assert current_trace_id() == TRACE


async def test_access_log_carries_trace_ids_sampled_or_not() -> None:
    """Tracing on: a sampled RPC's access line goes through structlog in the RPC's context, an
    unsampled one takes the direct JSON path; both carry the request's trace and span ids, with
    the same fields."""
    out = io.StringIO()
    s = settings(service_name="probe-svc")
    configure_logging(s, stream=out)
    provider, _ = memory_tracing()
    unsampled = "1" * 32
    try:
        async with grpc_server(s, [probe_service(ProbeServicer())], tracer_provider=provider) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                stub = pb_grpc.GRPCInferenceServiceStub(ch)
                for tp, rid in ((TRACEPARENT, "sampled"), (f"00-{unsampled}-{PARENT}-00", "unsampled")):
                    await stub.ModelReady(
                        pb.ModelReadyRequest(name="m"),
                        metadata=(("traceparent", tp), ("x-request-id", rid)),
                        timeout=10,
                    )
            deadline = time.monotonic() + 10
            while out.getvalue().count("rpc.handled") < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(ln) for ln in out.getvalue().splitlines() if ln.startswith("{")]
    handled = {ln["request_id"]: ln for ln in lines if ln["event"] == "rpc.handled"}
    assert handled["sampled"]["trace_id"] == TRACE
    assert handled["unsampled"]["trace_id"] == unsampled
    assert set(handled["sampled"]) == set(handled["unsampled"]) >= {"span_id", "rpc_method", "timestamp"}
    assert handled["sampled"]["span_id"] != PARENT and len(handled["unsampled"]["span_id"]) == 16
