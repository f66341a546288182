"""Per-tenant request counts on the gRPC front door (issue 18): the same
``modelserve_gateway_requests_total`` {route, code, tenant} as REST, route = the full gRPC method,
code = the HTTP status of the call's gRPC code, tenant = the authenticated tenant ("-" before
authentication). The gateway runs with authentication against real gRPC servers of fakes of our
upstreams; the counts are read from the gateway's real /metrics endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc
from modelserve_common.testing.launcher import free_port

INFER_KEY = "sk_infer_secret_m1"
INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


def _request(model: str) -> inf_pb.ModelInferRequest:
    req = inf_pb.ModelInferRequest(model_name=model)
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="FP32", shape=[1])
        req.raw_input_contents.append(np.ones(1, dtype=np.float32).tobytes())
    return req


@pytest.fixture
async def secured(make_gateway: Any, registry: Any) -> AsyncIterator[tuple[Any, int]]:
    registry.add_key(INFER_KEY, "k1", "t1", ["infer"])
    registry.deploy("add", "t1", {"1": 100})
    registry.deploy("identity", "t2", {"1": 100})
    port = free_port()
    async with make_gateway(auth_enabled=True, admin_api_key="admin-secret-m1", metrics_port=port) as gw:
        for _ in range(250):  # until the gateway follows the registry's Watch
            if registry.watchers:
                break
            await asyncio.sleep(0.02)
        yield gw, port


async def _counts(port: int) -> dict[tuple[str, str, str], float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelserve_gateway_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[(s.labels["route"], s.labels["code"], s.labels["tenant"])] = s.value
    return out


async def test_grpc_front_door_counts_requests_by_method_status_and_tenant(secured: Any) -> None:
    gw, port = secured
    before = await _counts(port)
    key = [("x-api-key", INFER_KEY)]
    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        inf = inf_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(3):
            await inf.ModelInfer(_request("add"), metadata=key, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as other:  # another tenant's model
            await inf.ModelInfer(_request("identity"), metadata=key, timeout=5)
        assert other.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await inf.ModelInfer(_request("add"), timeout=5)
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED

        async def requests() -> AsyncIterator[inf_pb.ModelInferRequest]:
            for _ in range(2):
                yield _request("add")

        replies = [r async for r in inf.ModelStreamInfer(requests(), metadata=key, timeout=5)]
        assert len(replies) == 2
        unknown = ch.unary_unary("/inference.GRPCInferenceService/Nope")
        with pytest.raises(grpc.aio.AioRpcError):
            await unknown(b"", timeout=5)

    after = await _counts(port)

    def delta(route: str, code: str, tenant: str) -> float:
        return after.get((route, code, tenant), 0.0) - before.get((route, code, tenant), 0.0)

    assert delta(INFER, "200", "t1") == 3
    assert delta(INFER, "404", "t1") == 1
    assert delta(INFER, "401", "-") == 1
    assert delta(STREAM, "200", "t1") == 1  # one stream, one request
    assert not [k for k in after if k[0].endswith("/Nope")]  # only the fronted methods are labels
    assert not [k for k in after if k[2] not in ("-", "t1", "t2")]
