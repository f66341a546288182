"""End to end against the REAL model server: `python -m modelserve_model_server` serving a test
repository (tests/model_repository: normalize, softmax; Python backend) plus the example `linear`
model, and `python -m modelserve_orchestrator` on PostgreSQL + Redis, both as subprocesses. A
3-node pipeline (normalize -> linear -> softmax) runs synchronously, streamed and as an
asynchronous execution; every output equals numpy's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from orchestrator_test_helpers import array, model_node

from modelserve.common.v1 import tensor_pb2
from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.testing import ServiceProcess, databases, free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[4]
TEST_REPO = Path(__file__).resolve().parents[1] / "model_repository"
W = np.random.RandomState(0).randn(16, 4).astype(np.float32)  # the `linear` example model


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    n = (x - x.mean(axis=-1, keepdims=True)) / (x.std(axis=-1, keepdims=True) + 1e-6)
    z = n.astype(np.float32) @ W
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return {"normalized": n, "logits": z, "probabilities": e / e.sum(axis=-1, keepdims=True)}


def fp32(name: str, a: np.ndarray) -> tensor_pb2.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return tensor_pb2.Tensor(name=name, datatype="FP32", shape=list(a.shape), raw_contents=a.tobytes())


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    repo = tmp_path_factory.mktemp("repo")
    for model in (TEST_REPO / "normalize", TEST_REPO / "softmax", ROOT / "models" / "linear"):
        (repo / model.name).symlink_to(model)
    port = free_port()
    proc = ServiceProcess(
        "modelserve_model_server",
        {"MODEL_SERVER_METRICS_PORT": "-1", "MODEL_SERVER_ACCESS_LOG": "false"},
        port,
        args=["--model-repository", str(repo), "--grpc-port", str(port), "--grpc-host", "127.0.0.1"],
    )
    with proc:
        yield proc
    proc.stop()


@pytest.fixture(scope="module")
def orchestrator(
    model_server: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pb_grpc.OrchestratorServiceStub]:
    url, name = databases.create_database()
    port = free_port()
    env = {
        "ORCHESTRATOR_DATABASE_URL": url,
        "ORCHESTRATOR_REDIS_URL": databases.redis_url(),
        "ORCHESTRATOR_REDIS_PREFIX": f"mstest:e2e:{time.time_ns()}:",
        "ORCHESTRATOR_MODEL_SERVER_URL": model_server.target,
        "ORCHESTRATOR_GRPC_PORT": str(port),
        "ORCHESTRATOR_METRICS_PORT": "-1",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path_factory.mktemp("orch")),
        "ORCHESTRATOR_ACCESS_LOG": "false",
    }
    proc = ServiceProcess("modelserve_orchestrator", env, port)
    try:
        with proc, grpc.insecure_channel(proc.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=_pipeline()), timeout=10)
            yield stub
    finally:
        proc.stop()
        databases.drop_database(name)


def _pipeline() -> pb.Pipeline:
    return pb.Pipeline(
        name="e2e",
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        nodes=[
            model_node("normalize", "normalize", "inputs.x"),
            model_node("linear", "linear", "normalize.y"),
            model_node("softmax", "softmax", "linear.y"),
        ],
        outputs=[
            pb.PipelineOutput(name="probabilities", sources=["softmax.y"]),
            pb.PipelineOutput(name="logits", sources=["linear.y"]),
        ],
    )


def _inputs(seed: int, rows: int = 3) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-5, 5, size=(rows, 16)).astype(np.float32)


def _check(outputs: list[tensor_pb2.Tensor], x: np.ndarray) -> None:
    got = {t.name: array(t) for t in outputs}
    want = expected(x)
    assert set(got) == {"probabilities", "logits"}
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["probabilities"].sum(axis=-1), 1.0, rtol=1e-5)


def _check_trace(trace: list[pb.NodeTrace]) -> None:
    assert [t.node for t in trace] == ["normalize", "linear", "softmax"]
    assert all(t.status == pb.NODE_STATUS_SUCCEEDED for t in trace)
    assert [(t.model_name, t.model_version) for t in trace] == [
        ("normalize", "1"),
        ("linear", "1"),
        ("softmax", "1"),
    ]


def test_run_pipeline_on_real_model_server_equals_numpy(
    orchestrator: pb_grpc.OrchestratorServiceStub,
) -> None:
    x = _inputs(1)
    resp = orchestrator.RunPipeline(pb.RunPipelineRequest(pipeline="e2e", inputs=[fp32("x", x)]), timeout=10)
    _check(list(resp.outputs), x)
    _check_trace(list(resp.trace))
    assert resp.pipeline_version == 1


def test_stream_pipeline_run_on_real_model_server_sends_each_node_then_result(
    orchestrator: pb_grpc.OrchestratorServiceStub,
) -> None:
    x = _inputs(2, rows=5)
    msgs = list(
        orchestrator.StreamPipelineRun(
            pb.StreamPipelineRunRequest(pipeline="e2e", inputs=[fp32("x", x)]), timeout=10
        )
    )
    kinds = [m.WhichOneof("event") for m in msgs]
    assert kinds == ["node_result", "node_result", "node_result", "result"]
    nodes = [m.node_result for m in msgs[:3]]
    _check_trace([n.trace for n in nodes])
    want = expected(x)
    partial = {t.name: array(t) for n in nodes for t in n.outputs}
    np.testing.assert_allclose(partial["normalize.y"], want["normalized"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(partial["linear.y"], want["logits"], rtol=1e-4, atol=1e-4)
    _check(list(msgs[-1].result.outputs), x)


def test_async_execution_on_real_model_server_equals_numpy(
    orchestrator: pb_grpc.OrchestratorServiceStub,
) -> None:
    xs = [_inputs(10 + i) for i in range(5)]
    ids = [
        orchestrator.CreateExecution(
            pb.CreateExecutionRequest(pipeline="e2e", inputs=[fp32("x", x)]), timeout=10
        ).execution.execution
        for x in xs
    ]
    deadline = time.monotonic() + 30
    done: dict[str, pb.Execution] = {}
    while len(done) < len(ids) and time.monotonic() < deadline:
        for eid in ids:
            if eid not in done:
                ex = orchestrator.GetExecution(pb.GetExecutionRequest(execution=eid), timeout=5).execution
                if ex.state in (pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_FAILED):
                    done[eid] = ex
        time.sleep(0.05)
    assert len(done) == len(ids), "executions did not finish in 30 s"
    for eid, x in zip(ids, xs, strict=True):
        ex = done[eid]
        assert ex.state == pb.EXECUTION_STATE_SUCCEEDED, ex.error
        _check(list(ex.outputs), x)
        _check_trace(list(ex.trace))


def test_model_error_from_real_model_server_names_node_and_status(
    orchestrator: pb_grpc.OrchestratorServiceStub,
) -> None:
    loose = pb.Pipeline(
        name="loose",
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
        nodes=[model_node("first", "normalize", "inputs.x")],
        outputs=[pb.PipelineOutput(name="y", sources=["first.y"])],
    )
    orchestrator.CreatePipeline(pb.CreatePipelineRequest(pipeline=loose), timeout=10)
    wrong = np.zeros((2, 8), dtype=np.float32)  # the model server's normalize declares [-1, 16]
    with pytest.raises(grpc.RpcError) as exc:
        orchestrator.RunPipeline(
            pb.RunPipelineRequest(pipeline="loose", inputs=[fp32("x", wrong)]), timeout=10
        )
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = exc.value.details() or ""
    assert "first" in details and "normalize" in details and "16" in details
