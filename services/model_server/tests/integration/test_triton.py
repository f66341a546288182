"""The model server in front of a real tritonserver (CPU, python backend): pass-through inference,
streaming, datatypes, Triton's errors, deadlines, cancellation, metadata and lifecycle."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server.server import running_server

pytestmark = pytest.mark.integration

W = np.random.RandomState(0).randn(16, 4).astype(np.float32)


def request(model: str, tensors: dict[str, tuple[str, np.ndarray]], **params: int) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, id="req-1")
    for key, value in params.items():
        req.parameters[key].int64_param = value
    for name, (datatype, array) in tensors.items():
        req.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if datatype == "BYTES":
            req.raw_input_contents.append(serialize_byte_tensor(array).item())
        else:
            req.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return req


def outputs(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    result = {}
    for out, raw in zip(resp.outputs, resp.raw_output_contents, strict=True):
        if out.datatype == "BYTES":
            arr = deserialize_bytes_tensor(raw)
        else:
            arr = np.frombuffer(raw, dtype=triton_to_np_dtype(out.datatype))
        result[out.name] = arr.reshape(list(out.shape))
    return result


def linear_request(rows: int = 1, seed: int = 1) -> tuple[pb.ModelInferRequest, np.ndarray]:
    x = np.random.RandomState(seed).randn(rows, 16).astype(np.float32)
    return request("linear", {"x": ("FP32", x)}), x


async def test_model_infer_through_model_server_is_identical_to_direct(served: Any) -> None:
    ours, direct, _ = served
    for rows in (1, 3, 64):
        req, x = linear_request(rows, seed=rows)
        via = await ours.ModelInfer(req, timeout=10)
        straight = await direct.ModelInfer(req, timeout=10)
        assert via.SerializeToString() == straight.SerializeToString()  # bytes passed through untouched
        np.testing.assert_allclose(outputs(via)["y"], x @ W, rtol=1e-5)
        assert via.id == "req-1" and via.model_name == "linear"


async def test_model_stream_infer_is_forwarded_as_a_stream(served: Any) -> None:
    ours, _, _ = served
    xs = [np.random.RandomState(i).randn(2, 16).astype(np.float32) for i in range(3)]
    bad = request("linear", {"x": ("FP32", np.zeros((1, 15), np.float32))})

    async def requests() -> Any:
        for x in xs:
            yield request("linear", {"x": ("FP32", x)})
        yield bad

    replies = [r async for r in ours.ModelStreamInfer(requests(), timeout=10)]
    assert len(replies) == 4
    for reply, x in zip(replies[:3], xs, strict=True):
        assert reply.error_message == ""
        np.testing.assert_allclose(outputs(reply.infer_response)["y"], x @ W, rtol=1e-5)
    assert "unexpected shape" in replies[3].error_message  # Triton's in-stream error, passed on


@pytest.mark.parametrize(
    ("model", "datatypes"),
    [
        ("identity_int", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]),
        ("identity_fp", ["FP16", "FP32", "FP64"]),
        ("identity_bool", ["BOOL"]),
        ("identity_bytes", ["BYTES"]),
    ],
)
async def test_model_infer_every_datatype_round_trips(served: Any, model: str, datatypes: list[str]) -> None:
    ours, direct, _ = served
    rng = np.random.RandomState(7)
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for dt in datatypes:
        if dt == "BYTES":
            arr = np.array([b"", b"\x00\x01\xff", "héllo".encode(), b"x" * 300], dtype=np.object_)
            tensors["IN_STRING"] = (dt, arr)
        elif dt == "BOOL":
            tensors["IN_BOOL"] = (dt, rng.rand(9) > 0.5)
        else:
            np_dt = triton_to_np_dtype(dt)
            if np.issubdtype(np_dt, np.integer):
                info = np.iinfo(np_dt)
                arr = np.array([info.min, info.max, 0, 1], dtype=np_dt)
            else:
                arr = np.array([np.inf, -0.0, 1.5, np.finfo(np_dt).max], dtype=np_dt)
            tensors[f"IN_{dt}"] = (dt, arr)
    req = request(model, tensors)
    via = await ours.ModelInfer(req, timeout=10)
    assert via.SerializeToString() == (await direct.ModelInfer(req, timeout=10)).SerializeToString()
    got = outputs(via)
    for name, (dt, arr) in tensors.items():
        out = got["OUT_" + name[3:]]
        assert out.dtype == arr.dtype or dt == "BYTES"
        assert out.tolist() == arr.tolist()


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (pb.ModelInferRequest(model_name="linear", model_version="7"), grpc.StatusCode.NOT_FOUND),
        (
            request("linear", {"x": ("FP32", np.zeros((1, 15), np.float32))}),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (request("linear", {"x": ("FP64", np.zeros((1, 16)))}), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown-version", "wrong-shape", "wrong-datatype"],
)
async def test_model_infer_triton_errors_pass_through_with_its_message(
    served: Any, req: pb.ModelInferRequest, code: grpc.StatusCode
) -> None:
    ours, direct, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as via:
        await ours.ModelInfer(req, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as straight:
        await direct.ModelInfer(req, timeout=10)
    assert via.value.code() == straight.value.code() == code
    assert via.value.details() == straight.value.details() and via.value.details()


async def test_model_infer_unknown_model_is_not_triton_routed(served: Any) -> None:
    ours, _, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ours.ModelInfer(pb.ModelInferRequest(model_name="no-such-model"), timeout=10)
    # not in Triton's index -> the local servicer answers (UNIMPLEMENTED until the CPU path lands,
    # NOT_FOUND after); never forwarded
    assert exc.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)


async def test_model_infer_deadline_shorter_than_latency_is_deadline_exceeded_on_both_hops(
    served: Any,
) -> None:
    ours, _, running = served
    backend = running.extra["triton"]
    before = backend.outcomes["DEADLINE_EXCEEDED"]
    req = request("slow", {"x": ("FP32", np.ones(3, np.float32))}, delay_ms=2000)
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ours.ModelInfer(req, timeout=0.3)
    elapsed = time.monotonic() - start
    assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.0  # ends at the deadline, not after the model's 2 s
    await asyncio.sleep(0.05)
    assert backend.outcomes["DEADLINE_EXCEEDED"] == before + 1  # the Triton hop expired too
    # and with a deadline longer than the latency it succeeds
    quick = request("slow", {"x": ("FP32", np.ones(3, np.float32))}, delay_ms=50)
    assert outputs(await ours.ModelInfer(quick, timeout=5))["y"].tolist() == [1.0, 1.0, 1.0]


async def test_model_infer_client_cancel_cancels_the_triton_call(served: Any) -> None:
    ours, _, running = served
    backend = running.extra["triton"]
    before = backend.outcomes["CANCELLED"]
    call = ours.ModelInfer(
        request("slow", {"x": ("FP32", np.ones(1, np.float32))}, delay_ms=1500), timeout=10
    )
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):
        if backend.outcomes["CANCELLED"] > before:
            break
        await asyncio.sleep(0.02)
    assert backend.outcomes["CANCELLED"] == before + 1
    assert sum(r.outstanding for r in backend.replicas) == 0


async def test_model_metadata_config_ready_statistics_come_from_triton(served: Any) -> None:
    ours, direct, _ = served
    for rpc, req in [
        ("ModelMetadata", pb.ModelMetadataRequest(name="linear")),
        ("ModelConfig", pb.ModelConfigRequest(name="linear")),
        ("ModelReady", pb.ModelReadyRequest(name="linear")),
    ]:
        via = await getattr(ours, rpc)(req, timeout=10)
        assert via.SerializeToString() == (await getattr(direct, rpc)(req, timeout=10)).SerializeToString()
    meta = await ours.ModelMetadata(pb.ModelMetadataRequest(name="linear"), timeout=10)
    assert [i.name for i in meta.inputs] == ["x"] and meta.platform == "python"
    config = await ours.ModelConfig(pb.ModelConfigRequest(name="linear"), timeout=10)
    assert config.config.max_batch_size == 64
    stats = await ours.ModelStatistics(pb.ModelStatisticsRequest(name="linear"), timeout=10)
    assert [s.name for s in stats.model_stats] == ["linear"]
    everything = await ours.ModelStatistics(pb.ModelStatisticsRequest(), timeout=10)
    assert {"linear", "slow", "identity_bytes"} <= {s.name for s in everything.model_stats}
    index = await ours.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
    assert {m.name: m.state for m in index.models}["linear"] == "READY"
    assert (await ours.ServerReady(pb.ServerReadyRequest(), timeout=10)).ready


async def test_repository_model_unload_and_load_reach_triton(served: Any) -> None:
    ours, direct, _ = served
    name = pb.ModelReadyRequest(name="identity_bool")
    await ours.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="identity_bool"), timeout=30)
    try:
        assert not (await direct.ModelReady(name, timeout=10)).ready
        assert not (await ours.ModelReady(name, timeout=10)).ready
    finally:
        await ours.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="identity_bool"), timeout=60)
    assert (await direct.ModelReady(name, timeout=10)).ready
    resp = await ours.ModelInfer(
        request("identity_bool", {"IN_BOOL": ("BOOL", np.array([True]))}), timeout=10
    )
    assert outputs(resp)["OUT_BOOL"].tolist() == [True]


async def test_repository_model_load_with_parameters_is_refused(served: Any) -> None:
    ours, _, _ = served
    req = pb.RepositoryModelLoadRequest(model_name="linear")
    req.parameters["config"].string_param = "{}"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ours.RepositoryModelLoad(req, timeout=10)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters are not accepted" in exc.value.details()


async def test_readiness_requires_the_configured_triton_models(
    triton: Any, model_server_settings: Any
) -> None:
    settings = model_server_settings(triton.target, triton_models="linear,not_in_repo")
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub_ready = await ch.unary_unary(
                "/inference.GRPCInferenceService/ServerReady",
                request_serializer=pb.ServerReadyRequest.SerializeToString,
                response_deserializer=pb.ServerReadyResponse.FromString,
            )(pb.ServerReadyRequest(), timeout=5)
            assert not stub_ready.ready
    async with running_server(model_server_settings(triton.target, triton_models="linear")) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


_TRITONCLIENT_SCRIPT = """
import json, sys
import numpy as np
import tritonclient.grpc as tc
client = tc.InferenceServerClient(sys.argv[1])
x = np.arange(32, dtype=np.float32).reshape(2, 16)
inp = tc.InferInput("x", [2, 16], "FP32"); inp.set_data_from_numpy(x)
res = client.infer("linear", [inp], request_id="abc")
print(json.dumps({"y": res.as_numpy("y").tolist(), "ready": client.is_model_ready("linear"),
                  "meta": client.get_model_metadata("linear", as_json=True)["inputs"][0]["name"]}))
"""


async def test_tritonclient_grpc_in_its_own_process_works_through_the_model_server(served: Any) -> None:
    _, _, running = served
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _TRITONCLIENT_SCRIPT,
        f"127.0.0.1:{running.port}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    got = json.loads(out)
    np.testing.assert_allclose(got["y"], np.arange(32, dtype=np.float32).reshape(2, 16) @ W, rtol=1e-5)
    assert got["ready"] is True and got["meta"] == "x"
