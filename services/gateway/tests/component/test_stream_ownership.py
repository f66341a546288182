"""Ownership at the gateway, on both doors: a tenant uses its own and shared deployments;
another tenant's unshared model is NOT_FOUND with the model server's missing-model message; a
name the registry has no deployment for goes on to the model server (the authority) with the
tenant identity. ModelStreamInfer answers every message, a refused one with an error response
of its own, and the stream goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc

ADMIN = "admin-bootstrap-secret-stream"
T1_KEY = "sk_stream_t1"
T1 = [("x-api-key", T1_KEY)]
ADMIN_MD = [("x-api-key", ADMIN)]
FOREIGN = "model 'identity' not found in the repository"


@pytest.fixture
async def gw(make_gateway, registry) -> AsyncIterator:
    registry.add_key(T1_KEY, "k1", "t1", ["infer", "read"])
    registry.deploy("add", "t1", {"1": 100})
    registry.deploy("identity", "t2", {"1": 100})  # another tenant's, not shared
    registry.deploy("nan", "t2", {"1": 100})
    registry.deployments["nan"].shared = True  # a platform-shared model
    # "bytes" and "nope" have no deployment: the model server decides.
    async with make_gateway(auth_enabled=True, admin_api_key=ADMIN, watch_registry=False) as gw:
        yield gw


def _req(model: str, rid: str) -> inf_pb.ModelInferRequest:
    req = inf_pb.ModelInferRequest(model_name=model, id=rid)
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="FP32", shape=[1])
        req.raw_input_contents.append(np.ones(1, dtype=np.float32).tobytes())
    return req


async def test_stream_answers_every_message_ping_pong(gw) -> None:
    """One message at a time, each answer awaited before the next is sent: a refused message
    (first of all, before the upstream has answered anything) is answered at once."""
    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        call = inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(metadata=T1, timeout=10)
        plan = [("identity", "f1"), ("add", "a1"), ("identity", "f2"), ("nan", "s1"), ("add", "a2")]
        for model, rid in plan:
            await call.write(_req(model, rid))
            resp = await asyncio.wait_for(call.read(), 5)
            assert resp.infer_response.id == rid
            if model == "identity":
                assert resp.error_message == FOREIGN
                assert resp.infer_response.model_name == "identity"
            else:
                assert resp.error_message == "" and resp.infer_response.model_name == model
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() is grpc.StatusCode.OK


async def test_stream_all_at_once_keeps_earlier_answers(gw) -> None:
    plan = [("add", "a1"), ("nan", "s1"), ("identity", "f1"), ("add", "a2"), ("identity", "f2")]

    async def requests() -> AsyncIterator[inf_pb.ModelInferRequest]:
        for model, rid in plan:
            yield _req(model, rid)

    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        call = inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(requests(), metadata=T1, timeout=10)
        ordered = [r async for r in call]
        assert await call.code() is grpc.StatusCode.OK
    # In the order of the requests: a refusal waits for the upstream's answers to earlier ones.
    assert [r.infer_response.id for r in ordered] == [rid for _, rid in plan]
    answers = {r.infer_response.id: r for r in ordered}
    assert answers["f1"].error_message == answers["f2"].error_message == FOREIGN
    for rid in ("a1", "a2", "s1"):
        assert answers[rid].error_message == "" and answers[rid].infer_response.outputs


async def test_stream_of_a_trusted_caller_is_not_refused(gw) -> None:
    async def requests() -> AsyncIterator[inf_pb.ModelInferRequest]:
        yield _req("identity", "x1")
        yield _req("add", "x2")

    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        call = inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            requests(), metadata=ADMIN_MD, timeout=10
        )
        answers = [r async for r in call]
    assert [(a.infer_response.id, a.error_message) for a in answers] == [("x1", ""), ("x2", "")]


async def test_grpc_ownership_and_identity_forwarding(gw, inference) -> None:
    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        stub = inf_grpc.GRPCInferenceServiceStub(ch)
        # Own model: the tenant identity reaches the model server (a client cannot pick another).
        await stub.ModelInfer(_req("add", "1"), metadata=[*T1, ("x-modelserve-tenant", "t2")], timeout=5)
        assert inference.last_metadata["x-modelserve-tenant"] == "t1"
        assert inference.last_metadata["x-modelserve-scopes"] == "infer,read"
        # Shared model of another tenant: allowed, identity forwarded.
        inference.last_metadata = {}
        await stub.ModelInfer(_req("nan", "2"), metadata=T1, timeout=5)
        assert inference.last_metadata["x-modelserve-tenant"] == "t1"
        # Another tenant's unshared model: NOT_FOUND at the gateway, the model server never asked.
        calls = inference.calls
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ModelInfer(_req("identity", "3"), metadata=T1, timeout=5)
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND and exc.value.details() == FOREIGN
        assert inference.calls == calls
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ModelMetadata(inf_pb.ModelMetadataRequest(name="identity"), metadata=T1, timeout=5)
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND and exc.value.details() == FOREIGN
        inference.last_metadata = {}
        await stub.ModelStatistics(inf_pb.ModelStatisticsRequest(name="add"), metadata=T1, timeout=5)
        assert inference.last_metadata["x-modelserve-tenant"] == "t1"
        # Every model's statistics: forwarded with the identity; another tenant's unshared model
        # left out, shared ones and names without a deployment (the model server's call) kept.
        inference.last_metadata = {}
        every = await stub.ModelStatistics(inf_pb.ModelStatisticsRequest(), metadata=T1, timeout=5)
        assert inference.last_metadata["x-modelserve-tenant"] == "t1"
        assert [s.name for s in every.model_stats] == ["add"]  # the fake answers add and identity
        every = await stub.ModelStatistics(inf_pb.ModelStatisticsRequest(), metadata=ADMIN_MD, timeout=5)
        assert [s.name for s in every.model_stats] == ["add", "identity"]
        # No registry deployment: forwarded with the identity, the model server answers.
        inference.last_metadata = {}
        meta = await stub.ModelMetadata(inf_pb.ModelMetadataRequest(name="bytes"), metadata=T1, timeout=5)
        assert meta.name == "bytes" and inference.last_metadata["x-modelserve-tenant"] == "t1"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ModelMetadata(inf_pb.ModelMetadataRequest(name="nope"), metadata=T1, timeout=5)
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND
        assert inference.last_metadata["x-modelserve-tenant"] == "t1"
        # The platform admin is trusted: no tenant metadata, every model.
        inference.last_metadata = {}
        await stub.ModelInfer(_req("identity", "4"), metadata=ADMIN_MD, timeout=5)
        assert "x-modelserve-tenant" not in inference.last_metadata
        assert "x-modelserve-scopes" not in inference.last_metadata
        inference.last_metadata = {"x-modelserve-tenant": "stale"}
        await stub.RepositoryIndex(inf_pb.RepositoryIndexRequest(), metadata=ADMIN_MD, timeout=5)
        assert "x-modelserve-tenant" not in inference.last_metadata


async def test_rest_ownership_and_identity_forwarding(gw, inference) -> None:
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1]},
            {"name": "INPUT1", "shape": [1], "datatype": "FP32", "data": [2]},
        ]
    }
    h = {"x-api-key": T1_KEY, "grpc-metadata-x-modelserve-tenant": "t2"}
    r = await gw.http.post("/v2/models/add/infer", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert inference.last_metadata["x-modelserve-tenant"] == "t1"
    assert inference.last_metadata["x-modelserve-scopes"] == "infer,read"
    r = await gw.http.post("/v2/models/nan/infer", json=body, headers=h)
    assert r.status_code == 200, r.text
    r = await gw.http.post("/v2/models/identity/infer", json=body, headers=h)
    assert r.status_code == 404 and r.json() == {"error": FOREIGN}
    inference.last_metadata = {}
    r = await gw.http.get("/v2/models/bytes", headers=h)
    assert r.status_code == 200 and inference.last_metadata["x-modelserve-tenant"] == "t1"
    inference.last_metadata = {}
    r = await gw.http.get("/v2/models/add/stats", headers=h)
    assert r.status_code == 200 and inference.last_metadata["x-modelserve-tenant"] == "t1"
    inference.last_metadata = {}
    r = await gw.http.post("/v2/models/identity/infer", json=body, headers={"x-api-key": ADMIN})
    assert r.status_code == 200 and "x-modelserve-tenant" not in inference.last_metadata


async def test_stream_rate_limited_message_is_answered_and_stream_goes_on(make_gateway, registry) -> None:
    registry.add_key(T1_KEY, "k1", "t1", ["infer"])
    registry.deploy("add", "t1", {"1": 100}, rps=0.001, burst=1)  # one call, then limited
    registry.deploy("nan", "t1", {"1": 100})

    async def requests() -> AsyncIterator[inf_pb.ModelInferRequest]:
        for model, rid in [("add", "a1"), ("add", "a2"), ("nan", "n1")]:
            yield _req(model, rid)

    async with make_gateway(auth_enabled=True, admin_api_key=ADMIN, watch_registry=False) as gw:
        async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
            call = inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(requests(), metadata=T1, timeout=10)
            answers = {r.infer_response.id: r.error_message async for r in call}
            assert await call.code() is grpc.StatusCode.OK
    assert answers["a1"] == "" and answers["n1"] == ""
    assert answers["a2"].startswith("rate limit of 1 requests per")


async def test_stream_with_a_one_answer_buffer_and_a_slow_reader(make_gateway, registry) -> None:
    """GATEWAY_STREAM_INFER_BUFFER=1: answers wait one at a time for a reader that lags; none is
    lost or reordered within its kind."""
    registry.add_key(T1_KEY, "k1", "t1", ["infer"])
    registry.deploy("add", "t1", {"1": 100})
    registry.deploy("identity", "t2", {"1": 100})
    plan = [("add" if i % 3 else "identity", f"m{i}") for i in range(30)]

    async def requests() -> AsyncIterator[inf_pb.ModelInferRequest]:
        for model, rid in plan:
            yield _req(model, rid)

    async with make_gateway(
        auth_enabled=True, admin_api_key=ADMIN, watch_registry=False, stream_infer_buffer=1
    ) as gw:
        async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
            call = inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(requests(), metadata=T1, timeout=20)
            answers = []
            async for r in call:
                answers.append((r.infer_response.id, r.error_message))
                await asyncio.sleep(0.005)
            assert await call.code() is grpc.StatusCode.OK
    assert sorted(answers) == sorted((rid, FOREIGN if m == "identity" else "") for m, rid in plan)
    served = [rid for rid, err in answers if not err]
    assert served == [rid for m, rid in plan if m == "add"]  # the upstream's answers keep their order


def test_stream_infer_buffer_setting_is_bounded() -> None:
    from pydantic import ValidationError

    from modelserve_gateway.settings import GatewaySettings

    assert GatewaySettings(stream_infer_buffer=1).stream_infer_buffer == 1
    with pytest.raises(ValidationError):
        GatewaySettings(stream_infer_buffer=0)


async def test_malformed_request_bytes_are_invalid_argument_on_the_front_door(gw) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # an 11-byte varint length
    async with grpc.aio.insecure_channel(gw.grpc_target) as ch:
        unary = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await unary(garbage, metadata=ADMIN_MD, timeout=5)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request message" in (exc.value.details() or "")
        # In a stream the malformed message is answered and the stream goes on.
        bidi = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")

        async def requests() -> AsyncIterator[bytes]:
            yield garbage
            yield _req("add", "ok").SerializeToString()

        call = bidi(requests(), metadata=T1, timeout=5)
        answers = [inf_pb.ModelStreamInferResponse.FromString(r) async for r in call]
        assert await call.code() is grpc.StatusCode.OK
    assert answers[0].error_message.startswith("malformed request message")
    assert answers[1].error_message == "" and answers[1].infer_response.id == "ok"


async def test_lists_keep_only_what_the_registry_vouches_for(gw) -> None:
    """Statistics of every model, filtered for a tenant: own and shared deployments kept; another
    tenant's and names without a deployment (a call naming them goes to the model server) left out."""
    from modelserve_common.errors import NotFound

    guard = gw.running.extra["guard"]
    await guard.owned_model("add", "t1")
    await guard.owned_model("nan", "t1")  # shared
    for name in ("identity", "bytes"):
        with pytest.raises(NotFound):
            await guard.owned_model(name, "t1")
