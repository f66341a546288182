"""The whole suite as processes for end-to-end tests: registry (PostgreSQL), model server,
orchestrator (PostgreSQL + Redis) and gateway on free loopback ports, with the settings every
such test repeats (metrics off, access logs off, a fast registry watch, artifacts under one root).
Imported only by tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelserve_common.testing import databases
from modelserve_common.testing.launcher import ServiceProcess, free_port

SERVICES = ("registry", "model_server", "orchestrator", "gateway")


@dataclass
class Suite:
    procs: dict[str, ServiceProcess]
    ports: dict[str, int]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(f"--- {p.module}\n{p.output()[-tail:]}" for p in self.procs.values())


def suite_env(
    tmp: Path, artifacts: Path, model_repository: Path, ports: dict[str, int], admin_key: str
) -> dict[str, dict[str, str]]:
    """Each service's environment (a fresh database per service that has one)."""
    reg = f"127.0.0.1:{ports['registry']}"
    ms = f"127.0.0.1:{ports['model_server']}"
    return {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATABASE_URL": databases.create_database()[0],
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
            "REGISTRY_ARTIFACT_ROOTS": str(artifacts),
            "REGISTRY_ACCESS_LOG": "false",
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(model_repository),
            "MODEL_SERVER_REGISTRY_URL": reg,
            "MODEL_SERVER_ARTIFACT_ROOTS": str(artifacts),
            "MODEL_SERVER_DATA_DIR": str(tmp / "ms"),
            "MODEL_SERVER_ACCESS_LOG": "false",
        },
        "orchestrator": {
            "ORCHESTRATOR_GRPC_PORT": str(ports["orchestrator"]),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_DATABASE_URL": databases.create_database()[0],
            "ORCHESTRATOR_REDIS_URL": databases.redis_url(),
            "ORCHESTRATOR_REDIS_PREFIX": f"mstest:suite:{time.time_ns()}:",
            "ORCHESTRATOR_REGISTRY_URL": reg,
            "ORCHESTRATOR_MODEL_SERVER_URL": ms,
            "ORCHESTRATOR_DATA_DIR": str(tmp / "orc"),
            "ORCHESTRATOR_ACCESS_LOG": "false",
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_HTTP_PORT": str(ports["http"]),
            "GATEWAY_HTTP_HOST": "127.0.0.1",
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": reg,
            "GATEWAY_MODEL_SERVER_URL": ms,
            "GATEWAY_ORCHESTRATOR_URL": f"127.0.0.1:{ports['orchestrator']}",
            "GATEWAY_ADMIN_API_KEY": admin_key,
            "GATEWAY_ACCESS_LOG": "false",
        },
    }


@contextmanager
def running_suite(
    tmp: Path,
    artifacts: Path,
    model_repository: Path,
    admin_key: str,
    overrides: dict[str, dict[str, str]] | None = None,
    start_timeout_s: float = 90.0,
) -> Iterator[Suite]:
    """Starts the four services (in dependency order, each SERVING before the next) and stops
    them all on exit. ``overrides`` adds or replaces settings per service."""
    ports = {n: free_port() for n in (*SERVICES, "http")}
    env = suite_env(tmp, artifacts, model_repository, ports, admin_key)
    for name, extra in (overrides or {}).items():
        env[name].update(extra)
    common = {"MODELSERVE_DATA_DIR": str(tmp), "PYTHONWARNINGS": "ignore"}
    procs = {n: ServiceProcess(f"modelserve_{n}", {**common, **env[n]}, ports[n], cwd=tmp) for n in SERVICES}
    try:
        for p in procs.values():
            p.start(timeout=start_timeout_s)
        yield Suite(procs, ports)
    finally:
        for p in procs.values():
            p.stop()
