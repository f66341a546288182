"""Rate limits (in process and in Redis, shared by replicas, fail-open/closed), canary routing,
load shedding and the circuit breaker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc

ADMIN = "admin-secret"
INFER_BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "INPUT1", "shape": [1], "datatype": "FP32", "data": [2]},
    ]
}


def _auth(**extra) -> dict:
    return dict(auth_enabled=True, admin_api_key=ADMIN) | extra


async def _six_then_429(http, secret: str) -> None:
    remaining = []
    for _ in range(6):
        r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": secret})
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "6"
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == [5, 4, 3, 2, 1, 0]
    r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": secret})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "10"
    assert r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["ratelimit-reset"]) == 60


async def test_in_process_limit_six_per_minute(make_gateway, registry) -> None:
    registry.add_key("sk_rl", "krl", "t1", ["infer"], rps=0.1, burst=6)
    registry.deploy("add", "t1", {"1": 100})
    async with make_gateway(**_auth()) as gw:
        await _six_then_429(gw.http, "sk_rl")


async def test_redis_limit_is_shared_by_two_replicas(make_gateway, registry, redis_url) -> None:
    key = f"k{uuid.uuid4().hex[:8]}"
    registry.add_key("sk_shared", key, "t1", ["infer"], rps=0.1, burst=6)
    registry.deploy("add", "t1", {"1": 100})
    async with (
        make_gateway(**_auth(redis_url=redis_url)) as a,
        make_gateway(**_auth(redis_url=redis_url)) as b,
    ):
        statuses = []
        for i in range(8):
            gw = a if i % 2 == 0 else b
            r = await gw.http.post(
                "/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": "sk_shared"}
            )
            statuses.append(r.status_code)
        assert statuses == [200] * 6 + [429, 429]
        # gRPC gets RESOURCE_EXHAUSTED with the same headers as metadata.
        async with grpc.aio.insecure_channel(a.grpc_target) as ch:
            req = inf_pb.ModelInferRequest(model_name="add")
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await inf_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
                    req, metadata=[("x-api-key", "sk_shared")], timeout=5
                )
            assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(exc.value.trailing_metadata())["retry-after"] == "10"


async def test_per_model_limit_from_the_deployment(make_gateway, registry) -> None:
    registry.add_key("sk_m", "km", "t1", ["infer"])
    registry.deploy("add", "t1", {"1": 100}, rps=0.1, burst=2)
    async with make_gateway(**_auth()) as gw:
        codes = [
            (
                await gw.http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": "sk_m"})
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_redis_down_follows_the_fail_mode(
    make_gateway, registry, throwaway_redis, fail_open, expected
) -> None:
    registry.add_key("sk_fm", "kfm", "t1", ["infer"], rps=100, burst=100)
    registry.deploy("add", "t1", {"1": 100})
    async with make_gateway(**_auth(redis_url=throwaway_redis.url, rate_limit_fail_open=fail_open)) as gw:
        r = await gw.http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": "sk_fm"})
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "99"
        throwaway_redis.stop()
        r = await gw.http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": "sk_fm"})
        assert r.status_code == expected, r.text


async def test_canary_weights_and_sticky_routing(make_gateway, registry, inference) -> None:
    registry.deploy("add", "", {"1": 80, "2": 20})
    async with make_gateway() as gw, grpc.aio.insecure_channel(gw.grpc_target) as ch:
        stub = inf_grpc.GRPCInferenceServiceStub(ch)
        req = inf_pb.ModelInferRequest(model_name="add")
        for name in ("INPUT0", "INPUT1"):
            req.inputs.add(name=name, datatype="FP32", shape=[1])
            req.raw_input_contents.append(np.ones(1, dtype=np.float32).tobytes())
        versions: Counter[str] = Counter()
        for _ in range(20):
            replies = await asyncio.gather(*(stub.ModelInfer(req, timeout=5) for _ in range(50)))
            versions.update(r.model_version for r in replies)
        # 1,000 draws at p=0.2: mean 200, sd ~12.6; +-5 sd.
        assert 137 <= versions["2"] <= 263, versions
        # Sticky: the same route key always lands on the same version; REST says which served.
        seen = set()
        for _ in range(20):
            r = await gw.http.post(
                "/v2/models/add/infer", json=INFER_BODY, headers={"x-modelserve-route-key": "user-42"}
            )
            seen.add(r.headers["x-modelserve-model-version"])
            assert r.json()["model_version"] == r.headers["x-modelserve-model-version"]
        assert len(seen) == 1
        # A pinned version is never rerouted.
        r = await gw.http.post("/v2/models/add/versions/2/infer", json=INFER_BODY)
        assert r.json()["model_version"] == "2"


async def test_load_shedding_keeps_admitted_latency_bounded(make_gateway) -> None:
    async with make_gateway(max_in_flight=2) as gw:

        async def one() -> tuple[int, float, str | None]:
            t0 = time.monotonic()
            r = await gw.http.get("/v1/fail/0", params={"delay_ms": 1000})
            return r.status_code, time.monotonic() - t0, r.headers.get("retry-after")

        results = await asyncio.gather(*(one() for _ in range(10)))
        ok = [t for s, t, _ in results if s == 200]
        shed = [(t, ra) for s, t, ra in results if s == 503]
        assert len(ok) == 2 and len(shed) == 8
        assert max(ok) < 3.0
        assert all(t < 0.8 and ra == "1" for t, ra in shed)  # shed at once, not after the 1 s upstream


async def test_circuit_breaker_opens_fails_fast_and_recovers(make_gateway) -> None:
    async with make_gateway(breaker_failures=2, breaker_open_s=0.4) as gw:
        for _ in range(2):
            assert (await gw.http.get("/v1/fail/14")).status_code == 503
        t0 = time.monotonic()
        r = await gw.http.get("/v1/fail/0")
        assert r.status_code == 503 and "circuit open" in r.json()["message"]
        assert time.monotonic() - t0 < 1.0 and r.headers["retry-after"]
        await asyncio.sleep(0.45)
        assert (await gw.http.get("/v1/fail/0")).status_code == 200  # the half-open probe closes it
        assert (await gw.http.get("/v1/fail/0")).status_code == 200


async def test_one_breaker_per_upstream_for_both_doors_and_every_call_kind(make_gateway) -> None:
    """Failures through the gRPC front door open the breaker that REST unary and streaming calls
    and gRPC streaming calls then meet (one Upstream, the breaker inside its calls)."""
    from gwtest.v1 import template_service_pb2 as tpl_pb
    from gwtest.v1 import template_service_pb2_grpc as tpl_grpc

    async with make_gateway(breaker_failures=2, breaker_open_s=0.4) as gw:
        async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
            stub = tpl_grpc.TemplateServiceStub(ch)
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub.Fail(tpl_pb.FailRequest(code=14), timeout=5)
                assert exc.value.details() == "failed with 14"
            r = await gw.http.get("/v1/fail/0")
            assert r.status_code == 503 and "circuit open" in r.json()["message"]
            r = await gw.http.get("/v1/count/3")
            assert r.status_code == 503 and "circuit open" in r.json()["message"]
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                async for _ in stub.Count(tpl_pb.CountRequest(n=3), timeout=5):
                    pass
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE and "circuit open" in (
                exc.value.details() or ""
            )
            await asyncio.sleep(0.45)
            got = [m.i async for m in stub.Count(tpl_pb.CountRequest(n=3), timeout=5)]  # the probe closes it
            assert got == [0, 1, 2]
            assert (await gw.http.get("/v1/fail/0")).status_code == 200
