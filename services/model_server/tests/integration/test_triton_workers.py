"""Workers in front of one Triton (``--workers 2``, real processes, the real tritonserver): every
worker forwards a Triton model's ModelStatistics to the same Triton, so the server's answer is
Triton's own figures once, not summed over the workers."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_common.testing.triton import TritonProcess

pytestmark = pytest.mark.integration


def _success(stub: svc_grpc.GRPCInferenceServiceStub) -> int:
    stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="linear"), timeout=10)
    return sum(s.inference_stats.success.count for s in stats.model_stats if s.name == "linear")


def test_a_triton_model_is_counted_once_whatever_the_workers(triton: TritonProcess, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    port = free_port()
    env = {
        "MODEL_SERVER_GRPC_PORT": str(port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_WORKERS": "2",
        "MODEL_SERVER_SHUTDOWN_GRACE_S": "1",
        "MODEL_SERVER_MODEL_REPOSITORY": str(repo),
        "MODEL_SERVER_LOAD_MODELS": "",
        "MODEL_SERVER_TRITON_URL": triton.target,
    }
    with ServiceProcess("modelserve_model_server", env, port, cwd=tmp_path) as proc:
        with grpc.insecure_channel(proc.target) as ch:  # every worker ready (ServerReady is for all)
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "the workers never all became ready"
                time.sleep(0.1)
        with grpc.insecure_channel(triton.target) as ch:
            direct = svc_grpc.GRPCInferenceServiceStub(ch)
            before = _success(direct)
            calls = 6
            for i in range(calls):  # one connection per call: the calls reach both workers
                with grpc.insecure_channel(proc.target, options=[("grpc.use_local_subchannel_pool", 1)]) as c:
                    x = np.full((1, 16), i, np.float32)
                    svc_grpc.GRPCInferenceServiceStub(c).ModelInfer(
                        pb.ModelInferRequest(
                            model_name="linear",
                            inputs=[
                                pb.ModelInferRequest.InferInputTensor(
                                    name="x", datatype="FP32", shape=[1, 16]
                                )
                            ],
                            raw_input_contents=[x.tobytes()],
                        ),
                        timeout=30,
                    )
            triton_count = _success(direct)
            assert triton_count - before == calls
        with grpc.insecure_channel(proc.target) as ch:
            assert _success(svc_grpc.GRPCInferenceServiceStub(ch)) == triton_count
