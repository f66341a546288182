"""A gateway rollout does not break in-flight calls: the gateway runs as a real process in front
of a slow upstream; six slow calls on each door, SIGTERM while they run. Both doors refuse new
work at once, drain together within one grace, and close their upstream channels last: all
twelve calls complete OK and the process exits well inside the grace."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from gateway_fakes import FakeRegistry

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

GRACE_S = 6.0
SLOW_S = 2.0  # every upstream inference takes this long
CALLS_PER_DOOR = 6


class SlowInference(inf_grpc.GRPCInferenceServiceServicer):
    """Answers ModelInfer with its inputs after SLOW_S; counts calls started and cancelled."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0

    async def ModelInfer(self, request: inf_pb.ModelInferRequest, context: Any) -> inf_pb.ModelInferResponse:
        self.started += 1
        try:
            await asyncio.sleep(SLOW_S)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        resp = inf_pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for t, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            resp.outputs.add(name="OUTPUT0", datatype=t.datatype, shape=t.shape)
            resp.raw_output_contents.append(raw)
        return resp


async def _serve(servicer: Any, add: Any) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[SlowInference, str, str]]:
    slow = SlowInference()
    inf_server, inf_target = await _serve(slow, inf_grpc.add_GRPCInferenceServiceServicer_to_server)
    reg_server, reg_target = await _serve(FakeRegistry(), reg_grpc.add_RegistryServiceServicer_to_server)
    try:
        yield slow, inf_target, reg_target
    finally:
        await inf_server.stop(0)
        await reg_server.stop(0)


def _grpc_request(i: int) -> inf_pb.ModelInferRequest:
    req = inf_pb.ModelInferRequest(model_name="slow", id=f"g{i}")
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[1])
    req.raw_input_contents.append(np.float32(i).tobytes())
    return req


REST_BODY = {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1.5]}]}


async def test_sigterm_drains_both_doors_at_once(upstream, tmp_path: Path) -> None:
    slow, inf_target, reg_target = upstream
    grpc_port, http_port = free_port(), free_port()
    gw = ServiceProcess(
        "modelserve_gateway",
        {
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_GRPC_HOST": "127.0.0.1",
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_HTTP_HOST": "127.0.0.1",
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_MODEL_SERVER_URL": inf_target,
            "GATEWAY_ORCHESTRATOR_URL": inf_target,
            "GATEWAY_REGISTRY_URL": reg_target,
            "GATEWAY_AUTH_ENABLED": "false",
            "GATEWAY_WATCH_REGISTRY": "false",
            "GATEWAY_SHUTDOWN_GRACE_S": str(GRACE_S),
            "GATEWAY_REDIS_URL": "",
            "MODELSERVE_REDIS_URL": "",
            "GATEWAY_LOG_FORMAT": "console",
        },
        grpc_port,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{http_port}"
    await asyncio.to_thread(gw.start, False)
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for SERVING without blocking the loop the upstream servers run on
            try:
                await asyncio.to_thread(gw.wait_serving, 1.0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, gw.output()
        async with (
            grpc.aio.insecure_channel(gw.target) as channel,
            httpx.AsyncClient(base_url=base, timeout=30) as http,
        ):
            stub = inf_grpc.GRPCInferenceServiceStub(channel)

            async def via_grpc(i: int) -> str:
                try:
                    resp = await stub.ModelInfer(_grpc_request(i), timeout=30)
                except grpc.aio.AioRpcError as exc:
                    return f"{exc.code().name}: {exc.details()}"
                return "OK" if resp.id == f"g{i}" else f"wrong answer {resp.id}"

            async def via_rest() -> str:
                try:
                    r = await http.post("/v2/models/slow/infer", json=REST_BODY)
                except httpx.HTTPError as exc:
                    return f"{type(exc).__name__}: {exc}"
                ok = r.status_code == 200 and r.json()["outputs"][0]["data"] == [1.5]
                return "OK" if ok else f"{r.status_code}: {r.text}"

            idle = httpx.AsyncClient(base_url=base, timeout=2)  # a keep-alive connection, idle
            assert (await idle.get("/healthz")).status_code == 200
            calls = [asyncio.create_task(via_grpc(i)) for i in range(CALLS_PER_DOOR)]
            calls += [asyncio.create_task(via_rest()) for _ in range(CALLS_PER_DOOR)]
            deadline = time.monotonic() + 10
            while slow.started < 2 * CALLS_PER_DOOR:  # every call is in flight upstream
                assert time.monotonic() < deadline, f"only {slow.started} calls reached the upstream"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            gw.signal(signal.SIGTERM)
            sigterm_at = time.monotonic()
            await asyncio.sleep(0.3)

            # New work is refused on both doors while the old calls drain.
            async with grpc.aio.insecure_channel(gw.target) as fresh:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await inf_grpc.GRPCInferenceServiceStub(fresh).ModelInfer(_grpc_request(99), timeout=2)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            async with httpx.AsyncClient(base_url=base, timeout=2) as fresh_http:
                with pytest.raises(httpx.ConnectError):
                    await fresh_http.post("/v2/models/slow/infer", json=REST_BODY)
            with pytest.raises(httpx.TransportError):  # closed by the gateway, no new connection
                await idle.post("/v2/models/slow/infer", json=REST_BODY)
            await idle.aclose()
            assert time.monotonic() - sigterm_at < SLOW_S, "the refusals came only after the drain"

            results = await asyncio.wait_for(asyncio.gather(*calls), GRACE_S + 5)
        assert results == ["OK"] * (2 * CALLS_PER_DOOR), gw.output()
        assert slow.started == 2 * CALLS_PER_DOOR and slow.cancelled == 0
        assert gw.proc is not None
        code = await asyncio.to_thread(gw.proc.wait, GRACE_S + 10)
        exited_after = time.monotonic() - sigterm_at
        assert code == 0, gw.output()
        # The calls needed about SLOW_S - 0.5 s more; one grace would allow GRACE_S.
        assert exited_after < GRACE_S, f"exit took {exited_after:.1f}s\n{gw.output()}"
    finally:
        await asyncio.to_thread(gw.stop)
