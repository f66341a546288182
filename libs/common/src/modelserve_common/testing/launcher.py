"""Starts services as subprocesses (``python -m modelserve_<svc>``), waits for health SERVING with
a deadline, and always cleans up: each process runs in its own process group, which is sent SIGTERM
and then SIGKILL. No fixed ports: callers take free ports from :func:`free_port`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(target: str, timeout: float = 30.0, service: str = "") -> None:
    """Blocks until ``target`` reports SERVING for ``service``; raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.05)
    raise TimeoutError(f"{target} not SERVING for {service!r} after {timeout}s (last: {last})")


class ServiceProcess:
    """One service subprocess. Use as a context manager; output goes to a temp log file."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        grpc_port: int,
        args: list[str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.module = module
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.grpc_port = grpc_port
        self.args = args or []
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, wait: bool = True, timeout: float = 60.0) -> ServiceProcess:
        fd, path = tempfile.mkstemp(prefix=f"{self.module}-", suffix=".log")
        self.log_path = Path(path)
        # The child keeps its own copy of the descriptor: ours is closed at once, so a process
        # killed and started again (or replaced without stop()) leaks no file.
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            try:
                self.wait_serving(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                wait_for_health(self.target, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"{self.module} not SERVING after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-8000:]

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        try:  # children left in the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
