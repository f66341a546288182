"""Gateway --workers 2: both processes serve the HTTP and gRPC ports, new connections go to them in
turn (or at least to both, where the kernel's hash is used), and SIGTERM to the first stops both.
model_server_connections: one gateway process reaches every worker of a model server."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.reuseport import round_robin_available
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_model_server.workers import HOP, socket_path

ROOT = Path(__file__).resolve().parents[4]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _server_side_owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The process holding the server end of the loopback connection from ``client_port``."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def test_gateway_workers_share_both_ports(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    gw = ServiceProcess(
        "modelserve_gateway",
        {
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{free_port()}",
            "GATEWAY_REGISTRY_URL": f"127.0.0.1:{free_port()}",
            "GATEWAY_AUTH_ENABLED": "false",
            "GATEWAY_WATCH_REGISTRY": "false",
            "GATEWAY_WORKERS": "2",
            "GATEWAY_SHUTDOWN_GRACE_S": "1",
        },
        grpc_port,
        cwd=tmp_path,
    )
    with gw.start(timeout=60):
        assert gw.proc is not None
        first = gw.proc.pid
        deadline = time.monotonic() + 30
        while len(_children(first)) != 1:
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.1)
        (second,) = _children(first)
        # the second worker serves too once it is up: wait until both ports answer 8 times in a row
        owners: dict[str, list[int | None]] = {"http": [], "grpc": []}
        deadline = time.monotonic() + 30
        while True:
            conns = []
            try:
                for _ in range(4):
                    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
                    c.request("GET", "/healthz")
                    assert c.getresponse().read() == b'{"status":"SERVING"}'
                    conns.append(c)
                channels = []
                for _ in range(4):
                    ch = grpc.insecure_channel(gw.target, options=[("grpc.use_local_subchannel_pool", 1)])
                    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                    channels.append(ch)
                owners["http"] = [
                    _server_side_owner(http_port, c.sock.getsockname()[1], [first, second]) for c in conns
                ]
                grpc_clients = _client_ports(grpc_port)
                owners["grpc"] = [_server_side_owner(grpc_port, p, [first, second]) for p in grpc_clients]
                for ch in channels:
                    ch.close()
            finally:
                for c in conns:
                    c.close()
            if all(set(o) == {first, second} for o in owners.values()):
                break
            assert time.monotonic() < deadline, f"connections did not reach both workers: {owners}"
            time.sleep(0.5)
        if round_robin_available():  # in turn: 2 of 4 connections each
            for door, got in owners.items():
                assert got.count(first) == got.count(second) == 2, (door, got)
        os.kill(first, signal.SIGTERM)
        assert gw.proc.wait(20) == 0
        deadline = time.monotonic() + 30
        while _alive(second):
            assert time.monotonic() < deadline, "the second worker outlived the first"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited, only not been reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _client_ports(server_port: int) -> list[int]:
    """Client ports of the established loopback connections to ``server_port`` (this process's)."""
    mine = {os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if _is_socket(fd)}
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if (
                state == "01"
                and int(remote.rsplit(":", 1)[1], 16) == server_port
                and f"socket:[{inode}]" in mine
            ):
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _is_socket(fd: Path) -> bool:
    try:
        return os.readlink(fd).startswith("socket:")
    except OSError:
        return False


def test_gateway_workers_need_fixed_ports(tmp_path: Path) -> None:
    proc = ServiceProcess(
        "modelserve_gateway",
        {"GATEWAY_GRPC_PORT": "0", "GATEWAY_HTTP_PORT": str(free_port()), "GATEWAY_WORKERS": "2"},
        0,
        cwd=tmp_path,
    )
    proc.start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(30) == 2
    assert "fixed --grpc-port" in proc.output()


def test_one_gateway_reaches_every_model_server_worker(tmp_path: Path) -> None:
    """model_server_connections=2 in front of a model server with 2 workers: the REST calls of one
    gateway process are served by both workers (each worker's own statistics say so)."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "models" / "linear", repo / "linear", ignore=shutil.ignore_patterns("__pycache__"))
    worker_dir = tmp_path / "w"
    worker_dir.mkdir()
    ms_port = free_port()
    ms = ServiceProcess(
        "modelserve_model_server",
        {
            "MODEL_SERVER_GRPC_PORT": str(ms_port),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_WORKERS": "2",
            "MODEL_SERVER_WORKER_DIR": str(worker_dir),
        },
        ms_port,
        args=["--model-repository", str(repo)],
        cwd=tmp_path,
    )
    gw_port, http_port = free_port(), free_port()
    gw = ServiceProcess(
        "modelserve_gateway",
        {
            "GATEWAY_GRPC_PORT": str(gw_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{ms_port}",
            "GATEWAY_MODEL_SERVER_CONNECTIONS": "2",
            "GATEWAY_REGISTRY_URL": f"127.0.0.1:{free_port()}",  # no registry: trusted callers pass
            "GATEWAY_AUTH_ENABLED": "false",
            "GATEWAY_WATCH_REGISTRY": "false",
        },
        gw_port,
        cwd=tmp_path,
    )
    with ms.start(timeout=90):
        with grpc.insecure_channel(ms.target) as ch:  # every worker ready (ServerReady is for all)
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            deadline = time.monotonic() + 60
            while not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                assert time.monotonic() < deadline, "the model server's workers never all became ready"
                time.sleep(0.1)
        with gw.start(timeout=60):
            body = json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
            )
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)  # one client connection
            try:
                for _ in range(20):
                    conn.request(
                        "POST", "/v2/models/linear/infer", body, {"content-type": "application/json"}
                    )
                    reply = conn.getresponse()
                    assert reply.status == 200, reply.read()
                    assert len(json.loads(reply.read())["outputs"][0]["data"]) == 4
            finally:
                conn.close()
        per_worker = []
        for i in range(2):  # each worker alone (its unix socket, the workers' own hop header)
            with grpc.insecure_channel(f"unix:{socket_path(worker_dir, i)}") as ch:
                stats = svc_grpc.GRPCInferenceServiceStub(ch).ModelStatistics(
                    pb.ModelStatisticsRequest(name="linear"), metadata=[(HOP, "test")], timeout=5
                )
                per_worker.append(sum(m.inference_stats.success.count for m in stats.model_stats))
        assert sum(per_worker) == 20, per_worker
        # without the eBPF program (no CAP_BPF) the kernel's hash puts the gateway's two
        # connections on one worker half the time: only round-robin promises both a share
        if round_robin_available():  # the gateway's two connections went to the two workers
            assert per_worker == [10, 10], per_worker
