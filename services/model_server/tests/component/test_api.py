"""Health, metadata, configuration, statistics, repository control, streaming, metrics and spans."""

from __future__ import annotations

import asyncio
import shutil

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ms_test_repo import make_settings, write_model
from prometheus_client import REGISTRY

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing import memory_tracing
from modelserve_model_server.server import running_server

Input = pb.ModelInferRequest.InferInputTensor


def fp32_request(model: str, values: list[float], rid: str = "") -> pb.ModelInferRequest:
    a = np.array([values], np.float32)
    return pb.ModelInferRequest(
        model_name=model,
        id=rid,
        inputs=[Input(name="INPUT0", datatype="FP32", shape=a.shape)],
        raw_input_contents=[a.tobytes()],
    )


async def test_server_live_ready_and_health_serving(server):
    assert (await server.stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await server.stub.ServerReady(pb.ServerReadyRequest())).ready
    health = health_pb2_grpc.HealthStub(server.channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_server_metadata_names_extensions(server):
    md = await server.stub.ServerMetadata(pb.ServerMetadataRequest())
    assert md.name == "modelserve" and md.version
    assert {"model_repository", "statistics", "model_configuration"} <= set(md.extensions)


async def test_model_ready_per_version(server):
    ready = server.stub.ModelReady
    assert (await ready(pb.ModelReadyRequest(name="addsub", version="1"))).ready
    assert (await ready(pb.ModelReadyRequest(name="addsub", version="2"))).ready
    assert not (await ready(pb.ModelReadyRequest(name="addsub", version="3"))).ready
    assert not (await ready(pb.ModelReadyRequest(name="nope"))).ready


async def test_model_metadata_shapes_with_batch_dim(server):
    md = await server.stub.ModelMetadata(pb.ModelMetadataRequest(name="slow"))
    assert (md.name, list(md.versions), md.platform) == ("slow", ["1"], "python")
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("x", "INT64", [-1, 1])]
    md2 = await server.stub.ModelMetadata(pb.ModelMetadataRequest(name="addsub"))
    assert list(md2.versions) == ["1", "2"]
    assert [list(t.shape) for t in md2.outputs] == [[4], [4]]


async def test_model_config_reflects_config_pbtxt(server):
    cfg = (await server.stub.ModelConfig(pb.ModelConfigRequest(name="slow"))).config
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("slow", "python", 8)
    assert cfg.dynamic_batching.priority_levels == 2
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 4
    assert cfg.parameters["delay_s"].string_value == "0.6"


async def test_model_statistics_counts_success_and_failure(server):
    await server.stub.ModelInfer(fp32_request("identity_fp32", [1, 2]))
    with pytest.raises(grpc.aio.AioRpcError):
        await server.stub.ModelInfer(
            fp32_request("identity_fp32", [1, 2]).__class__(model_name="identity_fp32")
        )
    st = (await server.stub.ModelStatistics(pb.ModelStatisticsRequest(name="identity_fp32"))).model_stats
    assert len(st) == 1
    s = st[0]
    assert (s.name, s.version) == ("identity_fp32", "1")
    assert s.inference_stats.success.count == 1 and s.inference_stats.fail.count == 1
    assert s.inference_stats.compute_infer.count == 1 and s.last_inference > 0
    every = (await server.stub.ModelStatistics(pb.ModelStatisticsRequest())).model_stats
    assert {(m.name, m.version) for m in every} >= {("addsub", "1"), ("addsub", "2"), ("slow", "1")}


async def test_repository_index_lists_states(server):
    idx = (await server.stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
    rows = {(m.name, m.version): m.state for m in idx}
    assert rows[("addsub", "1")] == rows[("addsub", "2")] == "READY"


async def test_repository_unload_then_load(server):
    await server.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="identity_fp32"))
    assert not (await server.stub.ModelReady(pb.ModelReadyRequest(name="identity_fp32"))).ready
    idx = (await server.stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
    assert [(m.state, m.reason) for m in idx if m.name == "identity_fp32"] == [("UNAVAILABLE", "unloaded")]
    ready_only = (await server.stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))).models
    assert "identity_fp32" not in {m.name for m in ready_only}
    await server.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="identity_fp32"))
    resp = await server.stub.ModelInfer(fp32_request("identity_fp32", [3]))
    assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == [3]


async def test_repository_failed_load_keeps_old_version_serving_and_says_why(server):
    (server.repo / "addsub" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: -3\n')
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="addsub"))
    assert exc.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "max_batch_size must be >= 0" in exc.value.details() and "keep serving" in exc.value.details()
    a = np.ones(4, np.float32).tobytes()
    resp = await server.stub.ModelInfer(
        pb.ModelInferRequest(
            model_name="addsub",
            inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
            raw_input_contents=[a, a],
        )
    )
    assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == [2, 2, 2, 2]
    idx = (await server.stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
    assert any(m.name == "addsub" and m.state == "READY" and "load failed" in m.reason for m in idx)


async def test_repository_load_broken_python_model_reports_reason(server):
    write_model(
        server.repo,
        "broken",
        'backend: "python"\ninput [{name: "x", data_type: TYPE_FP32, dims: [1]}]\n'
        'output [{name: "y", data_type: TYPE_FP32, dims: [1]}]\n',
        "raise RuntimeError('no weights')\n",
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="broken"))
    assert exc.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "no weights" in exc.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as exc2:
        await server.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="../slow"))
    assert exc2.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_repository_load_unknown_model_is_not_found_and_not_indexed(server):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="ghost"))
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    idx = (await server.stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
    assert "ghost" not in {m.name for m in idx}
    with pytest.raises(grpc.aio.AioRpcError) as exc2:
        await server.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="ghost"))
    assert exc2.value.code() is grpc.StatusCode.NOT_FOUND


async def test_stream_answers_in_order_and_reports_errors_in_band(server):
    requests = [fp32_request("identity_fp32", [float(i)], rid=f"r{i}") for i in range(20)]
    requests[7] = pb.ModelInferRequest(model_name="nope", id="r7")
    requests[12] = fp32_request("identity_int32", [1.0], rid="r12")  # wrong datatype

    async def gen():
        for r in requests:
            yield r

    got = [r async for r in server.stub.ModelStreamInfer(gen())]
    assert [r.infer_response.id for r in got] == [f"r{i}" for i in range(20)]
    assert "not found" in got[7].error_message and "NOT_FOUND" in got[7].error_message
    assert "expected datatype INT32" in got[12].error_message
    for i, r in enumerate(got):
        if i not in (7, 12):
            assert r.error_message == ""
            assert np.frombuffer(r.infer_response.raw_output_contents[0], np.float32).tolist() == [i]


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_metrics_requests_batches_and_queue(server):
    before = metric(
        "modelserve_model_server_requests_total", model="identity_int8", version="1", outcome="success"
    )
    invalid = metric(
        "modelserve_model_server_requests_total", model="identity_int8", version="1", outcome="invalid"
    )
    a = np.array([[1, 2]], np.int8)
    await server.stub.ModelInfer(
        pb.ModelInferRequest(
            model_name="identity_int8",
            inputs=[Input(name="INPUT0", datatype="INT8", shape=a.shape)],
            raw_input_contents=[a.tobytes()],
        )
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await server.stub.ModelInfer(pb.ModelInferRequest(model_name="identity_int8"))
    after = metric(
        "modelserve_model_server_requests_total", model="identity_int8", version="1", outcome="success"
    )
    assert after == before + 1
    assert (
        metric(
            "modelserve_model_server_requests_total", model="identity_int8", version="1", outcome="invalid"
        )
        == invalid + 1
    )
    assert metric("modelserve_model_server_batch_size_count", model="identity_int8", version="1") >= 1
    assert metric("modelserve_model_server_queue_depth", model="identity_int8", version="1") == 0
    assert metric("modelserve_model_server_model_ready", model="identity_int8", version="1") == 1


async def test_spans_for_queue_and_compute(repo):
    provider, exporter = memory_tracing()
    async with running_server(make_settings(repo, load_models="slow"), tracer_provider=provider) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)

            def req(tag: int) -> pb.ModelInferRequest:
                return pb.ModelInferRequest(
                    model_name="slow",
                    inputs=[Input(name="x", datatype="INT64", shape=[1, 1])],
                    raw_input_contents=[np.array([[tag]], np.int64).tobytes()],
                )

            first = asyncio.ensure_future(stub.ModelInfer(req(1)))
            await asyncio.sleep(0.05)
            await asyncio.gather(first, stub.ModelInfer(req(2)))
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("model.compute") == 2
    assert names.count("model.queue") == 1
    assert any(n.endswith("ModelInfer") for n in names)


async def test_ready_only_when_required_models_load(repo):
    shutil.rmtree(repo / "failing" / "1")
    settings = make_settings(repo, load_models="identity_fp32,failing", required_models="failing")
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
            health = health_pb2_grpc.HealthStub(ch)
            status = (await health.Check(health_pb2.HealthCheckRequest(service=""))).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert (await stub.ModelReady(pb.ModelReadyRequest(name="identity_fp32"))).ready
            idx = (await stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
            assert any(m.name == "failing" and "no numeric version folder" in m.reason for m in idx)
            (repo / "failing" / "1").mkdir()
            (repo / "failing" / "1" / "model.py").write_text(
                "class Model:\n    def predict(self, i):\n        return i\n"
            )
            await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="failing"))
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
            status = (await health.Check(health_pb2.HealthCheckRequest(service=""))).status
            assert status == health_pb2.HealthCheckResponse.SERVING
