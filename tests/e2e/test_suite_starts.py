"""The four services start as real processes, each answers grpc.health.v1 Check with SERVING, and
each exits cleanly on SIGTERM (graceful shutdown)."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_four_services_start_serve_health_and_stop_on_sigterm(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("registry", "model_server", "orchestrator", "gateway")}
    env_common = {"MODELSERVE_DATA_DIR": str(tmp_path)}
    specs = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_DATA_DIR": str(tmp_path / "reg"),
            "REGISTRY_METRICS_PORT": "-1",
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": f"127.0.0.1:{ports['registry']}",
        },
        "orchestrator": {
            "ORCHESTRATOR_GRPC_PORT": str(ports["orchestrator"]),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_DATA_DIR": str(tmp_path / "orc"),
            "ORCHESTRATOR_REGISTRY_URL": f"127.0.0.1:{ports['registry']}",
            "ORCHESTRATOR_MODEL_SERVER_URL": f"127.0.0.1:{ports['model_server']}",
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_HTTP_PORT": str(free_port()),
            "GATEWAY_REGISTRY_URL": f"127.0.0.1:{ports['registry']}",
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{ports['model_server']}",
            "GATEWAY_ORCHESTRATOR_URL": f"127.0.0.1:{ports['orchestrator']}",
        },
    }
    procs = [
        ServiceProcess(f"modelserve_{n}", {**env_common, **specs[n]}, ports[n], cwd=tmp_path) for n in specs
    ]
    try:
        for p in procs:
            p.start(timeout=90)
        for p in procs:
            with grpc.insecure_channel(p.target) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5
                )
                assert resp.status == health_pb2.HealthCheckResponse.SERVING, p.module
                listed = list(
                    reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
                    )
                )
                names = {s.name for r in listed for s in r.list_services_response.service}
                assert "grpc.health.v1.Health" in names, p.module
        for p in procs:
            p.signal(signal.SIGTERM)
        for p in procs:
            assert p.proc is not None
            assert p.proc.wait(30) == 0, f"{p.module} did not exit cleanly:\n{p.output()}"
    finally:
        for p in procs:
            p.stop()
