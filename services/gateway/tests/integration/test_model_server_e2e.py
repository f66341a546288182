"""Gateway -> real model server (`python -m modelserve_model_server --model-repository models/`),
both as subprocesses; tritonclient.http and tritonclient.grpc in a process of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelserve_common.testing import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[4]
CLIENT = Path(__file__).parent.parent / "clients" / "e2e_linear_client.py"

pytestmark = pytest.mark.e2e


def test_triton_clients_through_gateway_match_model_server(tmp_path: Path) -> None:
    ms_port = free_port()
    ms = ServiceProcess(
        "modelserve_model_server",
        {"MODEL_SERVER_GRPC_PORT": str(ms_port), "MODEL_SERVER_METRICS_PORT": "-1"},
        ms_port,
        args=["--model-repository", str(ROOT / "models")],
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
            "GATEWAY_REGISTRY_URL": f"127.0.0.1:{free_port()}",  # no registry: trusted callers pass
            "GATEWAY_AUTH_ENABLED": "false",
            "GATEWAY_WATCH_REGISTRY": "false",
        },
        gw_port,
        cwd=tmp_path,
    )
    with ms.start(timeout=90), gw.start(timeout=60):
        done = subprocess.run(
            [sys.executable, str(CLIENT), f"127.0.0.1:{http_port}", gw.target, ms.target],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-4000:] + gw.output() + ms.output()
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"json": True, "binary": True, "front_door": True, "metadata": "x"}
