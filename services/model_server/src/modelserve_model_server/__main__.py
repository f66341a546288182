"""python -m modelserve_model_server: the model_server process (and its workers when workers > 1)."""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings

PROG = "python -m modelserve_model_server"


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _spawn_workers(settings: ModelServerSettings) -> list[subprocess.Popen[bytes]]:
    """Workers 1..n-1 as child processes sharing the gRPC port (SO_REUSEPORT, connections handed
    out in turn: modelserve_common.reuseport); this process is worker 0. Each worker's metrics
    endpoint is metrics_port + i (when a fixed port is set); each serves a unix socket in
    worker_dir through which the workers answer for each other (workers.py)."""
    children = []
    for i in range(1, settings.workers):
        metrics = settings.metrics_port + i if settings.metrics_port > 0 else settings.metrics_port
        args = [
            *sys.argv[1:],
            *("--workers", str(settings.workers), "--worker-index", str(i)),
            *("--worker-dir", str(settings.worker_dir), "--reuse-port", "true"),
            *("--metrics-port", str(metrics)),
        ]
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "modelserve_model_server", *args], preexec_fn=_die_with_parent
            )
        )
    return children


def main() -> None:
    settings = load_settings(ModelServerSettings, prog=PROG)
    children: list[subprocess.Popen[bytes]] = []
    made_dir: Path | None = None
    if settings.workers > 1:
        if settings.grpc_port == 0:
            print(f"{PROG}: workers > 1 needs a fixed --grpc-port (they share it)", file=sys.stderr)
            raise SystemExit(2)
        if settings.worker_index == 0:
            if settings.worker_dir is None:
                made_dir = Path(tempfile.mkdtemp(prefix="modelserve-workers-"))
            settings = settings.model_copy(
                update={"reuse_port": True, "worker_dir": made_dir or settings.worker_dir}
            )
            children = _spawn_workers(settings)
    configure_logging(settings)
    try:
        asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(settings.shutdown_grace_s + 5)
            except subprocess.TimeoutExpired:
                child.kill()
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
