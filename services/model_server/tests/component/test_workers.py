"""workers > 1: processes sharing the gRPC port (SO_REUSEPORT) all serve, take new connections in
turn, answer readiness, statistics and load/unload as one server; SIGTERM to the first stops all."""

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
from modelserve_common.reuseport import round_robin_available
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_model_server.workers import HOP, socket_path

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


def _infer(stub: svc_grpc.GRPCInferenceServiceStub, seed: int) -> None:
    x = np.random.RandomState(seed).randn(1, 16).astype(np.float32)
    resp = stub.ModelInfer(
        pb.ModelInferRequest(
            model_name="linear",
            inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 16])],
            raw_input_contents=[x.tobytes()],
        ),
        timeout=5,
    )
    assert np.allclose(np.frombuffer(resp.raw_output_contents[0], np.float32), (x @ W).ravel(), atol=1e-5)


def _wait_ready(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = svc_grpc.GRPCInferenceServiceStub(ch)
        deadline = time.monotonic() + 30
        while True:
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the workers never all became ready"
            time.sleep(0.05)


def _worker(worker_dir: Path, i: int) -> tuple[grpc.Channel, svc_grpc.GRPCInferenceServiceStub]:
    """Worker i alone: its unix socket, with the hop header siblings send (no fan-out)."""
    ch = grpc.insecure_channel(f"unix:{socket_path(worker_dir, i)}")
    return ch, svc_grpc.GRPCInferenceServiceStub(ch)


def _success(stats: pb.ModelStatisticsResponse) -> int:
    return sum(s.inference_stats.success.count for s in stats.model_stats if s.name == "linear")


def _start(tmp_path: Path, *args: str) -> tuple[ServiceProcess, Path]:
    shutil.copytree(
        ROOT / "models" / "linear", tmp_path / "linear", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = free_port()
    worker_dir = tmp_path / "w"
    worker_dir.mkdir()
    env = {
        "MODEL_SERVER_MODEL_REPOSITORY": str(tmp_path),
        "MODEL_SERVER_GRPC_PORT": str(port),
        "MODEL_SERVER_METRICS_PORT": "-1",
        "MODEL_SERVER_WORKERS": "2",
        "MODEL_SERVER_WORKER_DIR": str(worker_dir),
        "MODEL_SERVER_SHUTDOWN_GRACE_S": "1",
    }
    return ServiceProcess("modelserve_model_server", env, port, args=list(args)), worker_dir


def test_connections_go_to_workers_in_turn_and_statistics_are_the_sum(tmp_path: Path) -> None:
    proc, worker_dir = _start(tmp_path)
    with proc:
        _wait_ready(proc.target)
        calls = 20
        for i in range(calls):  # one short connection per call (no connection shared by channels)
            with grpc.insecure_channel(proc.target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                _infer(svc_grpc.GRPCInferenceServiceStub(ch), i)
        per_worker = []
        for i in range(2):
            ch, stub = _worker(worker_dir, i)
            with ch:
                per_worker.append(
                    _success(stub.ModelStatistics(pb.ModelStatisticsRequest(), metadata=[(HOP, "test")]))
                )
        assert sum(per_worker) == calls, per_worker
        assert min(per_worker) > 0, f"one worker got every connection: {per_worker}"
        if round_robin_available():  # the kernel lets us steer: connections alternate exactly
            assert abs(per_worker[0] - per_worker[1]) <= 1, per_worker
        # from any connection, and asked of either worker directly, the statistics are the total
        for _ in range(4):
            with grpc.insecure_channel(proc.target) as ch:
                stats = svc_grpc.GRPCInferenceServiceStub(ch).ModelStatistics(
                    pb.ModelStatisticsRequest(name="linear"), timeout=5
                )
                assert _success(stats) == calls
                assert stats.model_stats[0].inference_count == calls
        for i in range(2):
            ch, stub = _worker(worker_dir, i)
            with ch:
                assert _success(stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=5)) == calls


def test_a_model_loaded_through_one_worker_is_ready_on_every_worker(tmp_path: Path) -> None:
    proc, worker_dir = _start(tmp_path, "--load-models", "")
    with proc:
        _wait_ready(proc.target)
        with grpc.insecure_channel(proc.target) as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            assert not stub.ModelReady(pb.ModelReadyRequest(name="linear"), timeout=5).ready
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="linear"), timeout=30)
            assert stub.ModelReady(pb.ModelReadyRequest(name="linear"), timeout=5).ready
        for i in range(2):  # each worker on its own says so
            ch, alone = _worker(worker_dir, i)
            with ch:
                assert alone.ModelReady(
                    pb.ModelReadyRequest(name="linear"), metadata=[(HOP, "test")], timeout=5
                ).ready, f"worker {i}"
        for i in range(6):  # whichever worker a connection lands on serves it
            with grpc.insecure_channel(proc.target) as ch:
                _infer(svc_grpc.GRPCInferenceServiceStub(ch), i)
        with grpc.insecure_channel(proc.target) as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="linear"), timeout=30)
        for i in range(2):
            ch, alone = _worker(worker_dir, i)
            with ch:
                assert not alone.ModelReady(
                    pb.ModelReadyRequest(name="linear"), metadata=[(HOP, "test")], timeout=5
                ).ready, f"worker {i}"


def test_server_ready_needs_every_worker(tmp_path: Path) -> None:
    proc, worker_dir = _start(tmp_path)
    with proc:
        _wait_ready(proc.target)
        assert proc.proc is not None
        (kid,) = children(proc.proc.pid)
        os.kill(kid, signal.SIGKILL)  # worker 1 gone: the server is not ready as a whole
        deadline = time.monotonic() + 10
        ch, first = _worker(worker_dir, 0)
        with ch:
            while first.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                assert time.monotonic() < deadline, "ServerReady ignored a dead worker"
                time.sleep(0.1)
