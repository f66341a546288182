"""The foundation over the wire: error mapping, health, drain, request ids, logs, spans, metrics,
reflection, streaming, through the real interceptor chain."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import SERVICE, ProbeServicer, probe_service

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from modelserve_common import errors
from modelserve_common.config import BaseServiceSettings
from modelserve_common.logging import configure_logging
from modelserve_common.server import RunningServer, grpc_server
from modelserve_common.testing import memory_tracing


def settings(**kw: object) -> BaseServiceSettings:
    base: dict[str, object] = {"grpc_host": "127.0.0.1", "grpc_port": 0, "shutdown_grace_s": 2.0}
    base.update(kw)
    return BaseServiceSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def running() -> AsyncIterator[tuple[RunningServer, ProbeServicer]]:
    servicer = ProbeServicer()
    async with grpc_server(settings(metrics_port=0), [probe_service(servicer)]) as srv:
        await srv.health.set_serving()
        yield srv, servicer


@pytest.fixture
async def stub(
    running: tuple[RunningServer, ProbeServicer],
) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running[0].port}") as ch:
        yield pb_grpc.GRPCInferenceServiceStub(ch)


@pytest.mark.parametrize("cls", errors.all_error_classes(), ids=lambda c: c.__name__)
async def test_error_mapping_service_error_becomes_its_status(
    stub: pb_grpc.GRPCInferenceServiceStub, cls: type[errors.ServiceError]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ModelReady(pb.ModelReadyRequest(name=f"raise:{cls.__name__}", version="v7"))
    assert exc.value.code() == cls.code
    assert exc.value.details() == "because v7"


async def test_error_mapping_unexpected_error_is_internal_without_details(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ModelReady(pb.ModelReadyRequest(name="boom"))
    assert exc.value.code() == grpc.StatusCode.INTERNAL
    assert exc.value.details() == "internal error"


async def test_unimplemented_rpc_answers_unimplemented(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_streaming_error_mid_stream_is_mapped(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        yield pb.ModelInferRequest(model_name="ok", id="1")
        yield pb.ModelInferRequest(model_name="fail", id="2")

    call = stub.ModelStreamInfer(requests())
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for resp in call:
            got.append(resp.infer_response.id)
    assert got == ["1"]
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == "bad stream item"


async def test_request_id_is_echoed_and_generated(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    call = stub.ModelReady(pb.ModelReadyRequest(name="rid"), metadata=(("x-request-id", "abc-123"),))
    assert (await call).ready is True
    assert ("x-request-id", "abc-123") in list(await call.trailing_metadata())
    call = stub.ModelReady(pb.ModelReadyRequest(name="rid"))
    await call
    generated = dict(await call.trailing_metadata())["x-request-id"]
    assert len(generated) == 32


async def test_request_id_propagates_through_channel_factory() -> None:
    """A service calling another with create_channel forwards the incoming x-request-id."""
    from modelserve_common.channels import create_channel

    seen: list[str] = []

    class Downstream(ProbeServicer):
        async def ModelReady(self, request, context):  # noqa: N802
            seen.append(dict(context.invocation_metadata())["x-request-id"])
            return pb.ModelReadyResponse(ready=True)

    async with grpc_server(settings(), [probe_service(Downstream())]) as down:
        channel = create_channel(f"127.0.0.1:{down.port}", settings())

        class Upstream(ProbeServicer):
            async def ModelReady(self, request, context):  # noqa: N802
                return await pb_grpc.GRPCInferenceServiceStub(channel).ModelReady(request)

        async with grpc_server(settings(), [probe_service(Upstream())]) as up:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{up.port}") as ch:
                await pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(
                    pb.ModelReadyRequest(name="x"), metadata=(("x-request-id", "trace-me"),)
                )
        await channel.close()
    assert seen == ["trace-me"]


async def test_health_not_serving_then_serving_then_not_serving_on_shutdown() -> None:
    servicer = ProbeServicer()
    async with grpc_server(settings(), [probe_service(servicer)]) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)

            async def status(name: str) -> int:
                return (await health.Check(health_pb2.HealthCheckRequest(service=name))).status

            assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status("liveness") == health_pb2.HealthCheckResponse.SERVING
            await srv.health.set_serving()
            assert await status("") == health_pb2.HealthCheckResponse.SERVING
            assert await status(SERVICE) == health_pb2.HealthCheckResponse.SERVING
            await srv.health.set_not_serving()
            assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status("liveness") == health_pb2.HealthCheckResponse.SERVING
            await srv.health.set_serving()
            # shutdown: a slow call keeps the server draining while we look at health
            slow = asyncio.ensure_future(
                pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="sleep:0.5"))
            )
            await servicer.started.wait()
            await srv.health.enter_graceful_shutdown()
            assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
            await srv.health.set_serving()  # ignored once shutting down
            assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert (await slow).ready


async def test_graceful_drain_lets_in_flight_call_finish() -> None:
    servicer = ProbeServicer()
    cm = grpc_server(settings(shutdown_grace_s=5.0), [probe_service(servicer)])
    srv = await cm.__aenter__()
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
    call = asyncio.ensure_future(
        pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="sleep:0.4"))
    )
    await servicer.started.wait()
    await cm.__aexit__(None, None, None)  # drains: returns once the in-flight call is done
    assert (await asyncio.wait_for(call, 2.0)).ready is True
    await ch.close()


async def test_drain_past_grace_cancels_the_call() -> None:
    servicer = ProbeServicer()
    cm = grpc_server(settings(shutdown_grace_s=0.2), [probe_service(servicer)])
    srv = await cm.__aenter__()
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
    call = asyncio.ensure_future(
        pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="sleep:5"))
    )
    await servicer.started.wait()
    await cm.__aexit__(None, None, None)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    await ch.close()


async def test_access_log_one_line_per_rpc_with_final_code() -> None:
    out = io.StringIO()
    s = settings()
    configure_logging(s, stream=out)
    try:
        async with grpc_server(s, [probe_service(ProbeServicer())]) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                stub = pb_grpc.GRPCInferenceServiceStub(ch)
                await stub.ModelReady(pb.ModelReadyRequest(name="ok"), metadata=(("x-request-id", "r-1"),))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.ModelReady(
                        pb.ModelReadyRequest(name="raise:NotFound"), metadata=(("x-request-id", "r-2"),)
                    )
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.ModelReady(
                        pb.ModelReadyRequest(name="boom"), metadata=(("x-request-id", "r-3"),)
                    )
    finally:
        import structlog

        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    handled = [ln for ln in lines if ln["event"] == "rpc.handled"]
    assert [(h["request_id"], h["grpc_code"]) for h in handled] == [
        ("r-1", "OK"),
        ("r-2", "NOT_FOUND"),
        ("r-3", "INTERNAL"),
    ]
    assert all(h["rpc_method"] == "ModelReady" and h["duration_ms"] >= 0 for h in handled)
    unexpected = [ln for ln in lines if ln["event"] == "rpc.unexpected_error"]
    assert len(unexpected) == 1 and "secret internals" in unexpected[0]["exception"]
    assert unexpected[0]["request_id"] == "r-3"


async def test_access_log_errors_only_methods_log_failures_not_successes() -> None:
    """A method named in ``errors_only`` (the model server's inference RPCs by default) is
    access-logged only when it fails (the test above: other methods log every call)."""
    out = io.StringIO()
    s = settings()
    configure_logging(s, stream=out)
    try:
        quiet = (f"/{SERVICE}/ModelReady",)
        async with grpc_server(s, [probe_service(ProbeServicer())], errors_only=quiet) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                stub = pb_grpc.GRPCInferenceServiceStub(ch)
                await stub.ModelReady(pb.ModelReadyRequest(name="ok"), metadata=(("x-request-id", "r-1"),))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.ModelReady(
                        pb.ModelReadyRequest(name="raise:NotFound"), metadata=(("x-request-id", "r-2"),)
                    )
    finally:
        import structlog

        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    handled = [
        (h["request_id"], h["rpc_method"], h["grpc_code"]) for h in lines if h["event"] == "rpc.handled"
    ]
    assert handled == [("r-2", "ModelReady", "NOT_FOUND")]  # r-1 succeeded: no line


async def test_a_span_per_rpc_with_status_and_log_correlation() -> None:
    provider, exporter = memory_tracing()
    async with grpc_server(settings(), [probe_service(ProbeServicer())], tracer_provider=provider) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            await stub.ModelReady(pb.ModelReadyRequest(name="ok"))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ModelReady(pb.ModelReadyRequest(name="raise:NotFound"))
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names == [f"/{SERVICE}/ModelReady", f"/{SERVICE}/ModelReady"]  # health is not traced
    assert spans[1].attributes is not None
    assert spans[1].attributes.get("rpc.grpc.status_code") == grpc.StatusCode.NOT_FOUND.value[0]


async def test_metrics_endpoint_exposes_standard_grpc_metrics(
    running: tuple[RunningServer, ProbeServicer], stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    await stub.ModelReady(pb.ModelReadyRequest(name="ok"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ModelReady(pb.ModelReadyRequest(name="raise:Unavailable"))
    assert running[0].metrics is not None
    url = f"http://127.0.0.1:{running[0].metrics.port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="ModelReady",grpc_service="inference.GRPCInferenceService",grpc_type="unary"}'
        in body
    )
    assert 'grpc_code="UNAVAILABLE",grpc_method="ModelReady"' in body
    assert "grpc_server_handling_seconds_bucket" in body


async def test_reflection_lists_the_services(running: tuple[RunningServer, ProbeServicer]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running[0].port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def reqs() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for resp in stub.ServerReflectionInfo(reqs()):
            names |= {s.name for s in resp.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_max_message_size_is_enforced(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    servicer = ProbeServicer()
    async with grpc_server(settings(max_message_bytes=4096), [probe_service(servicer)]) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="x" * 10_000))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
