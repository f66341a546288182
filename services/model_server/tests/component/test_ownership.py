"""Tenant isolation on every inference-service RPC, for local repository models: a tenant caller
(``x-modelserve-tenant``) sees only the models listed in MODEL_SERVER_SHARED_MODELS; any other
local model is a platform model, answered exactly as a missing one. Trusted callers (no tenant
header) see everything, as before. Load/unload are PERMISSION_DENIED to tenant callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import IDENTITY_PY, make_settings, write_model

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.context import SCOPES_HEADER, TENANT_HEADER
from modelserve_model_server.server import running_server

TENANT = ((TENANT_HEADER, "acme"), (SCOPES_HEADER, "tenant-admin,admin,read,write,infer"))
CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""


def request(model: str, version: str = "", rid: str = "") -> pb.ModelInferRequest:
    a = np.array([[1.0, 2.0]], np.float32)
    return pb.ModelInferRequest(
        model_name=model,
        model_version=version,
        id=rid,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=a.shape)],
        raw_input_contents=[a.tobytes()],
    )


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[svc_grpc.GRPCInferenceServiceStub]:
    repo = tmp_path / "repo"
    for name in ("public", "platform"):
        write_model(repo, name, CONFIG, IDENTITY_PY)
    async with running_server(make_settings(repo, shared_models="public, nonexistent")) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield svc_grpc.GRPCInferenceServiceStub(channel)


async def _error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def test_infer_hidden_model_is_answered_as_missing(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    hidden = await _error(stub.ModelInfer(request("platform"), metadata=TENANT))
    missing = await _error(stub.ModelInfer(request("ghost"), metadata=TENANT))
    assert hidden.code() is missing.code() is grpc.StatusCode.NOT_FOUND
    assert hidden.details() == missing.details().replace("ghost", "platform")
    assert hidden.details() == "model 'platform' not found in the repository"
    # with a version too: the same answer as a missing model with that version
    hidden_v = await _error(stub.ModelInfer(request("platform", "1"), metadata=TENANT))
    missing_v = await _error(stub.ModelInfer(request("ghost", "1"), metadata=TENANT))
    assert hidden_v.details() == missing_v.details().replace("ghost", "platform")
    bad_v = await _error(stub.ModelInfer(request("platform", "x"), metadata=TENANT))
    assert bad_v.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (
        bad_v.details() == (await _error(stub.ModelInfer(request("ghost", "x"), metadata=TENANT))).details()
    )
    # shared and trusted calls work
    assert (await stub.ModelInfer(request("public"), metadata=TENANT)).model_name == "public"
    assert (await stub.ModelInfer(request("platform"))).model_name == "platform"


async def test_refused_infer_never_counts_in_statistics(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    for _ in range(3):
        await _error(stub.ModelInfer(request("platform"), metadata=TENANT))
    stats = (await stub.ModelStatistics(pb.ModelStatisticsRequest(name="platform"))).model_stats
    assert stats[0].inference_stats.success.count == 0 and stats[0].inference_stats.fail.count == 0
    assert stats[0].inference_count == 0


async def test_stream_refuses_per_message_and_goes_on(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        yield request("public", rid="a")
        yield request("platform", rid="b")
        yield request("public", rid="c")
        yield request("ghost", rid="d")

    answers = [r async for r in stub.ModelStreamInfer(requests(), metadata=TENANT)]
    assert [a.infer_response.id for a in answers] == ["a", "b", "c", "d"]
    assert answers[0].error_message == "" and answers[2].error_message == ""
    assert answers[0].infer_response.model_name == "public"
    assert answers[1].error_message == "[NOT_FOUND] model 'platform' not found in the repository"
    assert answers[3].error_message == "[NOT_FOUND] model 'ghost' not found in the repository"
    # trusted stream: unchanged
    trusted = [r async for r in stub.ModelStreamInfer(requests())]
    assert [t.error_message == "" for t in trusted] == [True, True, True, False]


async def test_ready_metadata_config_hide_platform_models(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    ready = stub.ModelReady
    assert (await ready(pb.ModelReadyRequest(name="public"), metadata=TENANT)).ready
    assert (await ready(pb.ModelReadyRequest(name="platform"))).ready
    assert not (await ready(pb.ModelReadyRequest(name="ghost"))).ready  # trusted: unchanged
    for call, req in (
        (stub.ModelReady, pb.ModelReadyRequest),
        (stub.ModelMetadata, pb.ModelMetadataRequest),
        (stub.ModelConfig, pb.ModelConfigRequest),
    ):
        hidden = await _error(call(req(name="platform"), metadata=TENANT))
        missing = await _error(call(req(name="ghost"), metadata=TENANT))
        assert hidden.code() is grpc.StatusCode.NOT_FOUND
        assert hidden.details() == missing.details().replace("ghost", "platform")
        assert await call(req(name="public"), metadata=TENANT)
        assert await call(req(name="platform"))


async def test_statistics_and_index_list_only_visible_models(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    every = await stub.ModelStatistics(pb.ModelStatisticsRequest(), metadata=TENANT)
    assert {s.name for s in every.model_stats} == {"public"}
    assert {s.name for s in (await stub.ModelStatistics(pb.ModelStatisticsRequest())).model_stats} == {
        "public",
        "platform",
    }
    named = await _error(stub.ModelStatistics(pb.ModelStatisticsRequest(name="platform"), metadata=TENANT))
    assert named.code() is grpc.StatusCode.NOT_FOUND
    assert named.details() == "model 'platform' not found in the repository"
    index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=TENANT)
    assert {m.name for m in index.models} == {"public"}
    assert {m.name for m in (await stub.RepositoryIndex(pb.RepositoryIndexRequest())).models} == {
        "public",
        "platform",
    }


async def test_load_and_unload_are_platform_only(stub: svc_grpc.GRPCInferenceServiceStub) -> None:
    for name in ("public", "platform", "ghost"):
        err = await _error(
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=name), metadata=TENANT)
        )
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED
        err = await _error(
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=name), metadata=TENANT)
        )
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    # nothing was unloaded
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="public"))).ready
    await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="public"))
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="public"))).ready


async def test_triton_served_models_are_confined_too(tmp_path: Path) -> None:
    """A second model server plays Triton (same KServe v2 API): models the front server forwards
    to it get the same isolation as local ones (the ownership guard sits outside the router)."""
    back_repo, front_repo = tmp_path / "back", tmp_path / "front"
    for name in ("remote_public", "remote_private"):
        write_model(back_repo, name, CONFIG, IDENTITY_PY)
    write_model(front_repo, "local", CONFIG, IDENTITY_PY)
    async with running_server(make_settings(back_repo)) as back:
        front_settings = make_settings(
            front_repo,
            shared_models="remote_public",
            triton_url=f"127.0.0.1:{back.port}",
            triton_models="remote_public,remote_private",
        )
        async with running_server(front_settings) as front:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
                stub = svc_grpc.GRPCInferenceServiceStub(channel)
                assert (await stub.ModelInfer(request("remote_private"))).model_name == "remote_private"
                assert (await stub.ModelInfer(request("remote_public"), metadata=TENANT)).id == ""
                hidden = await _error(stub.ModelInfer(request("remote_private"), metadata=TENANT))
                assert hidden.code() is grpc.StatusCode.NOT_FOUND
                assert hidden.details() == "model 'remote_private' not found in the repository"
                for call, req in (
                    (stub.ModelReady, pb.ModelReadyRequest),
                    (stub.ModelMetadata, pb.ModelMetadataRequest),
                    (stub.ModelConfig, pb.ModelConfigRequest),
                    (stub.ModelStatistics, pb.ModelStatisticsRequest),
                ):
                    err = await _error(call(req(name="remote_private"), metadata=TENANT))
                    assert err.details() == "model 'remote_private' not found in the repository"
                stats = await stub.ModelStatistics(pb.ModelStatisticsRequest(), metadata=TENANT)
                assert {s.name for s in stats.model_stats} == {"remote_public"}
                index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=TENANT)
                assert {m.name for m in index.models} == {"remote_public"}
                trusted = await stub.RepositoryIndex(pb.RepositoryIndexRequest())
                assert {"local", "remote_public", "remote_private"} <= {m.name for m in trusted.models}
                err = await _error(
                    stub.RepositoryModelUnload(
                        pb.RepositoryModelUnloadRequest(model_name="remote_public"), metadata=TENANT
                    )
                )
                assert err.code() is grpc.StatusCode.PERMISSION_DENIED

                async def requests() -> AsyncIterator[pb.ModelInferRequest]:
                    yield request("remote_private", rid="a")  # refused first: the rest still flows
                    yield request("remote_public", rid="b")
                    yield request("remote_private", rid="c")
                    yield request("remote_public", rid="d")

                refused = "[NOT_FOUND] model 'remote_private' not found in the repository"
                answers = [r async for r in stub.ModelStreamInfer(requests(), metadata=TENANT)]
                assert [a.infer_response.id for a in answers] == ["a", "b", "c", "d"]
                assert [a.error_message for a in answers] == [refused, "", refused, ""]
                assert answers[1].infer_response.model_name == "remote_public"
                # ping-pong: each answer comes before the next request is sent (no waiting for more)
                call = stub.ModelStreamInfer(metadata=TENANT)
                for rid, model, error in (
                    ("p1", "remote_private", refused),
                    ("p2", "remote_public", ""),
                    ("p3", "remote_private", refused),
                ):
                    await call.write(request(model, rid=rid))
                    reply = await asyncio.wait_for(call.read(), 10)
                    assert (reply.infer_response.id, reply.error_message) == (rid, error)
                await call.done_writing()
                # nothing refused reached the back server
                back_stats = back.extra["manager"].get("remote_private").stats.to_pb()
                assert back_stats.inference_stats.success.count == 1  # the trusted call only
