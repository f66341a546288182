"""The model server follows the registry across real processes: a version deployed through the
registry is served, a wrong sha256 is marked FAILED while the old version keeps serving, and after
the registry is killed (SIGKILL) and restarted the model server catches up on its own."""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_model_server.artifacts import artifact_sha256

pytestmark = pytest.mark.e2e

MODEL_PY = """
import numpy as np

class Model:
    async def predict(self, inputs):
        return {"y": inputs["x"] * np.float32(SCALE)}
"""


def version_dir(root: Path, scale: int) -> Path:
    """A version folder artifact (model.py and a README), y = x * scale."""
    d = root / f"scale{scale}"
    d.mkdir(parents=True)
    (d / "model.py").write_text(textwrap.dedent(MODEL_PY).replace("SCALE", str(scale)))
    (d / "README").write_text(f"multiplies by {scale}\n")
    return d


def until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s}s (last error: {last})")


def test_model_server_follows_registry_processes_through_a_registry_kill(tmp_path: Path) -> None:
    reg_port, ms_port = free_port(), free_port()
    reg_env = {
        "REGISTRY_GRPC_PORT": str(reg_port),
        "REGISTRY_DATA_DIR": str(tmp_path / "reg"),
        "REGISTRY_METRICS_PORT": "-1",
        "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
        "REGISTRY_ARTIFACT_ROOTS": str(tmp_path / "artifacts"),
    }
    ms_env = {
        "MODEL_SERVER_GRPC_PORT": str(ms_port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_MODEL_REPOSITORY": str(tmp_path / "empty-repo"),
        "MODEL_SERVER_LOAD_MODELS": "",
        "MODEL_SERVER_REGISTRY_URL": f"127.0.0.1:{reg_port}",
        "MODEL_SERVER_DATA_DIR": str(tmp_path / "ms"),
        "MODEL_SERVER_REGISTRY_BACKOFF_MAX_S": "0.5",
        "MODEL_SERVER_ARTIFACT_ROOTS": str(tmp_path / "artifacts"),
    }
    registry = ServiceProcess("modelserve_registry", reg_env, reg_port, cwd=tmp_path).start(timeout=60)
    server = ServiceProcess("modelserve_model_server", ms_env, ms_port, cwd=tmp_path)
    try:
        server.start(timeout=60)  # ready: synced with a registry that has nothing deployed
        with (
            grpc.insecure_channel(registry.target) as rch,
            grpc.insecure_channel(server.target) as mch,
        ):
            reg = reg_grpc.RegistryServiceStub(rch)
            inf = svc_grpc.GRPCInferenceServiceStub(mch)
            spec = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 3])
            out = tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 3])

            def register(scale: int, sha: str | None = None) -> int:
                d = version_dir(tmp_path / "artifacts", scale)
                mv = reg_pb.ModelVersion(
                    artifact_uri=f"file://{d}",
                    artifact_sha256=sha or artifact_sha256(d),
                    backend="python",
                    inputs=[spec],
                    outputs=[out],
                    batching=reg_pb.BatchingConfig(max_batch_size=4),
                )
                made = reg.CreateModelVersion(
                    reg_pb.CreateModelVersionRequest(model="scaler", model_version=mv), timeout=5
                )
                return int(made.model_version.version)

            def deploy(version: int) -> None:
                reg.UpdateDeployment(
                    reg_pb.UpdateDeploymentRequest(
                        deployment=reg_pb.Deployment(
                            model="scaler",
                            targets=[reg_pb.DeploymentTarget(version=str(version), weight=100)],
                        )
                    ),
                    timeout=5,
                )

            def answer() -> tuple[str, float]:
                reply = inf.ModelInfer(
                    pb.ModelInferRequest(
                        model_name="scaler",
                        inputs=[
                            pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 3])
                        ],
                        raw_input_contents=[np.ones((1, 3), np.float32).tobytes()],
                    ),
                    timeout=5,
                )
                return reply.model_version, float(np.frombuffer(reply.raw_output_contents[0], np.float32)[0])

            reg.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name="scaler")), timeout=5)
            deploy(register(2))
            assert until(lambda: answer() == ("1", 2.0))
            bad = register(3, sha="f" * 64)
            deploy(bad)

            def failed() -> reg_pb.ModelVersion | None:
                got = reg.GetModelVersion(
                    reg_pb.GetModelVersionRequest(model="scaler", version=str(bad)), timeout=5
                )
                return (
                    got.model_version
                    if got.model_version.status == reg_pb.ModelVersion.STATUS_FAILED
                    else None
                )

            record = until(failed)
            assert "sha256 mismatch" in record.status_message
            assert answer() == ("1", 2.0)

            registry.signal(signal.SIGKILL)
            assert registry.proc is not None
            registry.proc.wait(10)
            registry.stop()  # the process is gone; this closes its log file before it is replaced
            assert answer() == ("1", 2.0)  # serving goes on without the registry
        registry = ServiceProcess("modelserve_registry", reg_env, reg_port, cwd=tmp_path).start(timeout=60)
        with (
            grpc.insecure_channel(registry.target) as rch,
            grpc.insecure_channel(server.target) as mch,
        ):
            reg = reg_grpc.RegistryServiceStub(rch)
            inf = svc_grpc.GRPCInferenceServiceStub(mch)
            good = register(5)
            deploy(good)
            assert until(lambda: answer() == (str(good), 5.0))

            def v1_gone() -> bool:  # version 1 is unloaded once the new version serves
                try:
                    inf.ModelReady(pb.ModelReadyRequest(name="scaler", version="1"), timeout=5)
                    inf.ModelMetadata(pb.ModelMetadataRequest(name="scaler", version="1"), timeout=5)
                except grpc.RpcError as exc:
                    return exc.code() is grpc.StatusCode.NOT_FOUND
                return False

            assert until(v1_gone)
    finally:
        server.stop()
        registry.stop()
