"""`make run` (scripts/run_local.py) refuses to start on a port that is taken, naming it, and stops
everything with the child's own explanation when a service dies during start-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve_common.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "scripts/run_local.py"
PORT_VARS = [
    "REGISTRY_GRPC_PORT",
    "REGISTRY_METRICS_PORT",
    "MODEL_SERVER_GRPC_PORT",
    "MODEL_SERVER_METRICS_PORT",
    "ORCHESTRATOR_GRPC_PORT",
    "ORCHESTRATOR_METRICS_PORT",
    "GATEWAY_GRPC_PORT",
    "GATEWAY_METRICS_PORT",
    "GATEWAY_HTTP_PORT",
]
pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Free ports for everything run_local starts, and a temporary data folder."""
    return {
        **os.environ,
        **{var: str(free_port()) for var in PORT_VARS},
        "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
        "MODELSERVE_RUN_START_TIMEOUT_S": "60",
    }


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _run_local(env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Runs run_local to its end; past ``timeout`` it gets SIGTERM (it then stops what it started)."""
    proc = subprocess.Popen(
        [sys.executable, str(RUN_LOCAL)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"run_local still running after {timeout}s:\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_run_local_port_taken_exits_fast_naming_port_service_and_variable(
    env: dict[str, str], listener: socket.socket, tmp_path: Path
) -> None:
    taken = listener.getsockname()[1]
    env["ORCHESTRATOR_GRPC_PORT"] = str(taken)
    done = _run_local(env, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {taken} (orchestrator gRPC)" in done.stderr
    assert "ORCHESTRATOR_GRPC_PORT" in done.stderr and "already in use" in done.stderr
    assert "SERVING" not in done.stdout  # nothing was started
    assert not (tmp_path / "data").exists()


def test_run_local_same_port_twice_is_refused(env: dict[str, str]) -> None:
    env["GATEWAY_HTTP_PORT"] = env["GATEWAY_GRPC_PORT"]
    done = _run_local(env, timeout=30)
    assert done.returncode == 1
    assert "GATEWAY_GRPC_PORT and GATEWAY_HTTP_PORT" in done.stderr


def test_run_local_child_dying_during_startup_stops_all_and_shows_its_stderr(env: dict[str, str]) -> None:
    env["REGISTRY_DATABASE_URL"] = "mysql://app@db/x"  # the registry refuses it and exits 2
    done = _run_local(env, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run: registry exited with status 2 during start-up" in done.stderr
    assert "REGISTRY_DATABASE_URL" in done.stderr  # the child's own line, repeated in the summary
    assert "Traceback" not in done.stderr
    assert "model_server" not in done.stdout + done.stderr  # the next service never started
