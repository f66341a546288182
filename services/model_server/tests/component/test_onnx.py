"""The ONNX Runtime backend with the example classifier of models/ (built by scripts/make_examples.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import make_settings

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.server import running_server

ROOT = Path(__file__).resolve().parents[4]
Input = pb.ModelInferRequest.InferInputTensor


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_examples import BIAS, WEIGHTS

    logits = x @ WEIGHTS + BIAS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), logits.argmax(axis=1).reshape(-1, 1)


@pytest.fixture
def onnx_repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "models" / "classifier", tmp_path / "classifier")
    return tmp_path


async def test_onnx_classifier_matches_numpy_reference(onnx_repo):
    async with running_server(make_settings(onnx_repo)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            x = np.random.RandomState(3).rand(5, 4).astype(np.float32) * 6
            resp = await stub.ModelInfer(
                pb.ModelInferRequest(
                    model_name="classifier",
                    inputs=[Input(name="features", datatype="FP32", shape=[5, 4])],
                    raw_input_contents=[x.tobytes()],
                )
            )
            probs, label = reference(x)
            got = {o.name: (o, raw) for o, raw in zip(resp.outputs, resp.raw_output_contents, strict=True)}
            assert got["probabilities"][0].datatype == "FP32" and list(got["probabilities"][0].shape) == [
                5,
                3,
            ]
            assert np.allclose(
                np.frombuffer(got["probabilities"][1], np.float32).reshape(5, 3), probs, atol=1e-5
            )
            assert np.array_equal(np.frombuffer(got["label"][1], np.int64).reshape(5, 1), label)
            md = await stub.ModelMetadata(pb.ModelMetadataRequest(name="classifier"))
            assert md.platform == "onnxruntime_onnx"


async def test_onnx_config_not_matching_the_model_fails_load_with_reason(onnx_repo):
    cfg = onnx_repo / "classifier" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "features"', 'name: "pixels"'))
    async with running_server(make_settings(onnx_repo)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            # per-model failure isolation: the server is ready, only this model is not
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
            assert not (await stub.ModelReady(pb.ModelReadyRequest(name="classifier"))).ready
            assert running.extra["manager"].failed_count == 1
            idx = (await stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
            assert len(idx) == 1 and idx[0].state == "UNAVAILABLE"
            assert "config input 'pixels' is not an input of model.onnx" in idx[0].reason
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.ModelInfer(pb.ModelInferRequest(model_name="classifier"))
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
