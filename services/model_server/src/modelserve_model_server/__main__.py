"""python -m modelserve_model_server: the model_server process (and its workers when workers > 1)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_common.workers import spawn_workers, stop_workers
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings

PROG = "python -m modelserve_model_server"


def main() -> None:
    """With workers > 1 this process is worker 0: it starts workers 1..n-1 sharing the gRPC port
    (modelserve_common.workers) and a folder for their unix sockets, through which the workers
    answer for each other (workers.py)."""
    settings = load_settings(ModelServerSettings, prog=PROG)
    children = []
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
            children = spawn_workers(
                "modelserve_model_server",
                settings.workers,
                settings.metrics_port,
                ["--worker-dir", str(settings.worker_dir)],
            )
    configure_logging(settings)
    try:
        asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))
    finally:
        stop_workers(children, settings.shutdown_grace_s)
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
