"""workers > 1: processes sharing the gRPC port (SO_REUSEPORT) all serve; SIGTERM to the first stops all."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import grpc
import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[4]
W = np.random.RandomState(0).randn(16, 4).astype(np.float32)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "models" / "linear", tmp_path / "linear", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = free_port()
    env = {
        "MODEL_SERVER_MODEL_REPOSITORY": str(tmp_path),
        "MODEL_SERVER_GRPC_PORT": str(port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_WORKERS": "2",
        "MODEL_SERVER_SHUTDOWN_GRACE_S": "1",
    }
    with ServiceProcess("modelserve_model_server", env, port) as proc:
        assert proc.proc is not None
        kids = children(proc.proc.pid)
        assert len(kids) == 1, kids
        for i in range(16):  # new connections are spread over the workers by the kernel
            with grpc.insecure_channel(proc.target) as ch:
                stub = svc_grpc.GRPCInferenceServiceStub(ch)
                deadline = time.monotonic() + 20
                while not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                    assert time.monotonic() < deadline, "a worker never became ready"
                    time.sleep(0.05)
                x = np.random.RandomState(i).randn(2, 16).astype(np.float32)
                resp = stub.ModelInfer(
                    pb.ModelInferRequest(
                        model_name="linear",
                        inputs=[
                            pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 16])
                        ],
                        raw_input_contents=[x.tobytes()],
                    ),
                    timeout=5,
                )
                y = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 4)
                assert np.allclose(y, x @ W, atol=1e-5)
        os.kill(proc.proc.pid, signal.SIGTERM)  # the first process only, not the group
        assert proc.proc.wait(20) == 0
        deadline = time.monotonic() + 10
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(k) for k in kids), "a worker outlived the first process"
