"""Triton going away and coming back, under load: prompt UNAVAILABLE, no hang, recovery without a
model-server restart, and a second replica taking the traffic of a killed one."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.server import running_server

pytestmark = pytest.mark.integration

X = np.random.RandomState(3).randn(1, 16).astype(np.float32)
W = np.random.RandomState(0).randn(16, 4).astype(np.float32)


def linear_request() -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 16])
    req.raw_input_contents.append(X.tobytes())
    return req


class Load:
    """Closed-loop load on ModelInfer from ``workers`` tasks; records (end time, code, latency)."""

    def __init__(self, stub: Any, workers: int = 4, timeout: float = 5.0) -> None:
        self.stub = stub
        self.workers = workers
        self.timeout = timeout
        self.results: list[tuple[float, grpc.StatusCode, float]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _worker(self) -> None:
        req = linear_request()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                resp = await self.stub.ModelInfer(req, timeout=self.timeout)
                y = np.frombuffer(resp.raw_output_contents[0], np.float32)
                assert np.allclose(y, (X @ W).ravel(), rtol=1e-5)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                await asyncio.sleep(0.01)
            end = time.monotonic()
            self.results.append((end, code, end - start))

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def codes(self, after: float = 0.0, before: float = float("inf")) -> Counter[grpc.StatusCode]:
        return Counter(code for end, code, _ in self.results if after <= end < before)


async def _health(channel: grpc.aio.Channel) -> int:
    resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return int(resp.status)


async def _wait_for(predicate: Any, limit_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise TimeoutError(f"condition not met within {limit_s}s")


async def test_triton_killed_under_load_is_prompt_unavailable_then_recovers_after_restart(
    triton_factory: Any, model_server_settings: Any
) -> None:
    triton = triton_factory(("linear",))
    port = triton.grpc_port
    settings = model_server_settings(triton.target, triton_probe_interval_s=0.2, triton_eject_s=0.2)
    async with (
        running_server(settings) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        assert await _health(ch) == health_pb2.HealthCheckResponse.SERVING
        load = Load(stub).start()
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        triton.kill()
        await asyncio.sleep(1.5)
        down = load.codes(after=killed_at + 0.5)
        # Triton down: every call fails UNAVAILABLE, promptly (well inside the 5 s deadline)
        assert down and set(down) == {grpc.StatusCode.UNAVAILABLE}
        latencies = [lat for end, code, lat in load.results if end > killed_at + 0.5]
        assert max(latencies) < 1.0
        assert set(load.codes(after=killed_at)) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        assert await _health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING

        restarted_at = time.monotonic()
        triton_factory(("linear",), grpc_port=port)  # same address, model server not restarted

        async def serving_again() -> bool:
            return load.codes(after=time.monotonic() - 0.2).get(grpc.StatusCode.OK, 0) > 0

        recovered_in = await _wait_for(serving_again, 15)
        await load.stop()
        assert await _health(ch) == health_pb2.HealthCheckResponse.SERVING
        assert recovered_in < 5
    before_kill = load.codes(before=killed_at)
    assert set(before_kill) == {grpc.StatusCode.OK}
    print(
        f"recovered {recovered_in:.2f}s after Triton was ready ({restarted_at - killed_at:.1f}s after kill)"
    )


async def test_two_replicas_one_killed_traffic_continues_on_the_other(
    triton_factory: Any, model_server_settings: Any
) -> None:
    a = triton_factory(("linear",))
    b = triton_factory(("linear",))
    settings = model_server_settings(f"{a.target},{b.target}", triton_probe_interval_s=0.2)
    async with (
        running_server(settings) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        load = Load(stub, workers=6).start()
        await asyncio.sleep(1.0)
        a.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(1.5)
        await load.stop()
        backend = running.extra["triton"]
        assert [r.ejected for r in backend.replicas] == [True, False]
        assert await _health(ch) == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(b.target) as direct:
        stats = await svc_grpc.GRPCInferenceServiceStub(direct).ModelStatistics(
            pb.ModelStatisticsRequest(name="linear"), timeout=5
        )
    served_by_b = stats.model_stats[0].inference_count
    codes = load.codes()
    after = load.codes(after=killed_at)
    # no failed request at all: calls in flight on the killed replica were retried on the other
    assert set(codes) == {grpc.StatusCode.OK}, codes
    assert after[grpc.StatusCode.OK] > 20
    # both replicas took traffic before the kill (least-outstanding balancing)
    assert 0 < served_by_b < codes[grpc.StatusCode.OK]
