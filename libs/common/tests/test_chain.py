"""THE chain, applied to handlers at registration with handler wrappers innermost (inside the error
mapping and access log), and the access log's two writers (direct JSON lines, structlog for other
formats)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable

import grpc
import pytest
import structlog
from helpers import SERVICE, ProbeServicer, probe_service

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from modelserve_common import errors
from modelserve_common.config import BaseServiceSettings
from modelserve_common.logging import configure_logging
from modelserve_common.server import grpc_server

READY = f"/{SERVICE}/ModelReady"


def settings(**kw: object) -> BaseServiceSettings:
    base: dict[str, object] = {"grpc_host": "127.0.0.1", "grpc_port": 0, "shutdown_grace_s": 2.0}
    base.update(kw)
    return BaseServiceSettings(**base)  # type: ignore[arg-type]


def refusing_wrapper(seen: list[str]) -> Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]:
    """Refuses ModelReady for name "deny" with a ServiceError; leaves other methods alone."""

    def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        seen.append(method)
        if method != READY:
            return handler
        inner = handler.unary_unary

        async def guarded(request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> object:
            if request.name == "deny":
                raise errors.PermissionDenied("wrapper says no")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, handler.request_deserializer, handler.response_serializer
        )

    return wrap


async def _calls(port: int) -> list[tuple[grpc.StatusCode, str, str]]:
    """ok, deny, deny-with-id: (code, details, echoed request id)."""
    out = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for name, rid in (("ok", "rid-ok"), ("deny", "rid-deny")):
            call = stub.ModelReady(pb.ModelReadyRequest(name=name), metadata=(("x-request-id", rid),))
            try:
                await call
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
            trailing = dict(await call.trailing_metadata() or ())
            out.append((code, details, str(trailing.get("x-request-id"))))
    return out


async def test_chain_wrappers_run_inside_error_mapping_and_access_log() -> None:
    out = io.StringIO()
    s = settings()
    configure_logging(s, stream=out)
    seen: list[str] = []
    try:
        async with grpc_server(s, [probe_service(ProbeServicer())], wrappers=[refusing_wrapper(seen)]) as srv:
            results = await _calls(srv.port)
            await asyncio.sleep(0.05)  # the access-log lines are written on a later loop turn
    finally:
        structlog.reset_defaults()
    assert results == [
        (grpc.StatusCode.OK, "", "rid-ok"),
        (grpc.StatusCode.PERMISSION_DENIED, "wrapper says no", "rid-deny"),
    ]
    # applied once per registered method, with full method names
    assert READY in seen and len(seen) == len(set(seen))
    lines = [json.loads(ln) for ln in out.getvalue().splitlines() if ln.startswith("{")]
    handled = [(ln["request_id"], ln["grpc_code"]) for ln in lines if ln["event"] == "rpc.handled"]
    assert handled == [("rid-ok", "OK"), ("rid-deny", "PERMISSION_DENIED")]


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_access_log_same_fields_from_both_writers(log_format: str) -> None:
    """JSON lines are written directly; the console format goes through structlog. Either way one
    line per RPC, in order, with request id, method, code, duration, level, timestamp, service."""
    out = io.StringIO()
    s = settings(log_format=log_format, service_name="probe-svc")
    configure_logging(s, stream=out)
    try:
        async with grpc_server(s, [probe_service(ProbeServicer())]) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                stub = pb_grpc.GRPCInferenceServiceStub(ch)
                await asyncio.gather(
                    *(
                        stub.ModelReady(
                            pb.ModelReadyRequest(name="ok"), metadata=(("x-request-id", f'q"{i}'),)
                        )
                        for i in range(5)
                    )
                )
            await asyncio.sleep(0.05)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    if log_format == "console":
        handled = [ln for ln in text.splitlines() if "rpc.handled" in ln]
        assert len(handled) == 5
        assert all("grpc_code=OK" in ln and "rpc_method=ModelReady" in ln for ln in handled)
        return
    lines = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
    handled_json = [ln for ln in lines if ln["event"] == "rpc.handled"]
    assert sorted(h["request_id"] for h in handled_json) == [f'q"{i}' for i in range(5)]  # escaped
    for h in handled_json:
        assert set(h) == {
            "event",
            "grpc_code",
            "duration_ms",
            "request_id",
            "rpc_method",
            "level",
            "timestamp",
            "service",
        }
        assert (h["grpc_code"], h["rpc_method"], h["level"], h["service"]) == (
            "OK",
            "ModelReady",
            "info",
            "probe-svc",
        )
        assert h["timestamp"].endswith("Z") and h["duration_ms"] >= 0


async def test_access_log_respects_level() -> None:
    out = io.StringIO()
    s = settings(log_level="WARNING")
    configure_logging(s, stream=out)
    try:
        async with grpc_server(s, [probe_service(ProbeServicer())]) as srv:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                await pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name="ok"))
            await asyncio.sleep(0.05)
    finally:
        structlog.reset_defaults()
    assert "rpc.handled" not in out.getvalue()
