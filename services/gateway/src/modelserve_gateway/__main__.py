"""python -m modelserve_gateway: the gateway process (and its workers when workers > 1)."""

import asyncio
import sys
from subprocess import Popen

import structlog

from modelserve_common.config import load_settings
from modelserve_common.logging import configure_logging
from modelserve_common.server import run_until_signal
from modelserve_common.tracing import configure_tracing
from modelserve_common.workers import spawn_workers, stop_workers
from modelserve_gateway.server import running_server
from modelserve_gateway.settings import GatewaySettings

PROG = "python -m modelserve_gateway"


def main() -> None:
    """With workers > 1 this process is worker 0 and starts workers 1..n-1, which share the gRPC
    and HTTP ports (modelserve_common.workers)."""
    settings = load_settings(GatewaySettings, prog=PROG)
    children: list[Popen[bytes]] = []
    if settings.workers > 1:
        if settings.grpc_port == 0 or settings.http_port == 0:
            print(
                f"{PROG}: workers > 1 needs a fixed --grpc-port and --http-port (they share them)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        settings = settings.model_copy(update={"reuse_port": True})
        if settings.worker_index == 0:
            children = spawn_workers("modelserve_gateway", settings.workers, settings.metrics_port)
    configure_logging(settings)
    if settings.workers > 1 and not settings.redis_url and settings.worker_index == 0:
        structlog.get_logger(__name__).warning(
            "gateway.workers_local_rate_limits",
            workers=settings.workers,
            note="without redis_url each worker keeps its own rate-limit buckets: up to workers x the limit",
        )
    try:
        asyncio.run(run_until_signal(running_server(settings, tracer_provider=configure_tracing(settings))))
    finally:
        stop_workers(children, settings.shutdown_grace_s)


if __name__ == "__main__":
    main()
