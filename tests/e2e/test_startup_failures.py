"""Service processes that cannot start say why in one line and exit non-zero within seconds (a
busy port: 1, a bad setting: 2); a database that is merely down is not a start-up failure, and a
signal while waiting for it stops the process promptly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve_common.testing import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process (here: a plain socket) listens on, on loopback only."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _run(module: str, env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def test_registry_on_busy_grpc_port_exits_1_with_one_line_naming_port_and_variable(
    tmp_path: Path, taken_port: int
) -> None:
    code, err, took = _run(
        "modelserve_registry",
        {
            "REGISTRY_GRPC_PORT": str(taken_port),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp_path),
        },
        tmp_path,
    )
    assert code == 1, err
    assert took < 30
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"gRPC port {taken_port}" in last and "REGISTRY_GRPC_PORT" in last, err
    assert "already in use" in last


def test_orchestrator_bad_database_url_exits_2_naming_the_variable_not_the_password(tmp_path: Path) -> None:
    code, err, _ = _run(
        "modelserve_orchestrator",
        {
            "ORCHESTRATOR_GRPC_PORT": str(free_port()),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_DATABASE_URL": "postgresql://app:hunter2@db:notaport/x",
        },
        tmp_path,
    )
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "ORCHESTRATOR_DATABASE_URL" in err and "hunter2" not in err


def test_orchestrator_with_database_down_waits_and_stops_on_sigterm(tmp_path: Path) -> None:
    """A database that is down is not a start-up failure (readiness reports it); the process keeps
    waiting for it and still stops promptly on SIGTERM."""
    down = f"postgresql://app:pw@127.0.0.1:{free_port()}/x?connect_timeout=1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve_orchestrator"],
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRATOR_GRPC_PORT": str(free_port()),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_DATABASE_URL": down,
            "ORCHESTRATOR_DB_TIMEOUT_S": "1",
        },
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until it reports the database missing
            line = proc.stderr.readline()
            if not line or "dependencies_unavailable" in line:
                break
        assert proc.poll() is None, "a database that is down must not stop the process"
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
