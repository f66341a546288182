"""The real suite (registry, model server, orchestrator, gateway) started as processes on free
ports, with an admin key, for the SDK and CLI end-to-end tests. SQLite by default; the
PostgreSQL + Redis variant is requested with `suite_for("postgres")`."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelserve_client import Client, NotFound, Unauthenticated
from modelserve_common.testing import ServiceProcess, databases, free_port

ROOT = Path(__file__).resolve().parents[3]
ADMIN = "sdk-e2e-admin-key"
FEATURES = [[5.1, 3.5, 1.4, 0.2]]
CLF_IO = {
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
    ],
    "batching": {"max_batch_size": 8},
}


@dataclass
class Suite:
    url: str
    http_url: str
    artifacts: Path
    procs: list[ServiceProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.module}\n{p.output()[-3000:]}" for p in self.procs)

    def onnx_version_fields(self) -> dict[str, object]:
        blob = self.artifacts / "clf.onnx"
        return {
            "artifact_uri": blob.as_uri(),
            "artifact_sha256": hashlib.sha256(blob.read_bytes()).hexdigest(),
            "backend": "onnx",
            **CLF_IO,
        }


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_suite(tmp: Path, backend: str) -> tuple[Suite, list[ServiceProcess]]:
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    shutil.copy(ROOT / "models/classifier/1/model.onnx", artifacts / "clf.onnx")
    ports = {n: free_port() for n in ("registry", "model_server", "orchestrator", "gateway", "http")}
    reg_target = f"127.0.0.1:{ports['registry']}"
    ms_target = f"127.0.0.1:{ports['model_server']}"
    orch_target = f"127.0.0.1:{ports['orchestrator']}"
    reg_db: dict[str, str] = {"REGISTRY_DATA_DIR": str(tmp / "reg")}
    orch_db: dict[str, str] = {}
    if backend == "postgres":
        reg_db = {"REGISTRY_DATABASE_URL": databases.create_database()[0]}
        orch_db = {
            "ORCHESTRATOR_DATABASE_URL": databases.create_database()[0],
            "ORCHESTRATOR_REDIS_URL": databases.redis_url(),
            "ORCHESTRATOR_REDIS_PREFIX": f"mstest:sdk:{time.time_ns()}:",
        }
    common = {"MODELSERVE_DATA_DIR": str(tmp), "PYTHONWARNINGS": "ignore"}
    specs: dict[str, dict[str, str]] = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
            "REGISTRY_ARTIFACT_ROOTS": str(artifacts),
            "REGISTRY_ACCESS_LOG": "false",
            **reg_db,
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": reg_target,
            "MODEL_SERVER_ARTIFACT_ROOTS": str(artifacts),
            "MODEL_SERVER_DATA_DIR": str(tmp / "ms"),
            "MODEL_SERVER_ACCESS_LOG": "false",
        },
        "orchestrator": {
            "ORCHESTRATOR_GRPC_PORT": str(ports["orchestrator"]),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_REGISTRY_URL": reg_target,
            "ORCHESTRATOR_MODEL_SERVER_URL": ms_target,
            "ORCHESTRATOR_DATA_DIR": str(tmp / "orc"),
            "ORCHESTRATOR_ACCESS_LOG": "false",
            **orch_db,
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_HTTP_PORT": str(ports["http"]),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": reg_target,
            "GATEWAY_MODEL_SERVER_URL": ms_target,
            "GATEWAY_ORCHESTRATOR_URL": orch_target,
            "GATEWAY_ADMIN_API_KEY": ADMIN,
            "GATEWAY_ACCESS_LOG": "false",
        },
    }
    procs = [
        ServiceProcess(f"modelserve_{n}", {**common, **env}, ports[n], cwd=tmp) for n, env in specs.items()
    ]
    suite = Suite(f"127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['http']}", artifacts, procs)
    return suite, procs


@contextmanager
def running_suite(tmp: Path, backend: str) -> Iterator[Suite]:
    s, procs = start_suite(tmp, backend)
    try:
        for p in procs:
            p.start(timeout=90)
        yield s
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """SQLite, shared by the SDK, push and CLI tests."""
    with running_suite(tmp_path_factory.mktemp("sdk"), "sqlite") as s:
        yield s


def model_ready(c: Client, model: str) -> bool:
    try:
        return bool(c.model_ready(model))
    except NotFound:
        return False


def key_refused(url: str, secret: str) -> bool:
    with Client(url, api_key=secret, timeout=10) as c:
        try:
            c.list_deployments()
        except Unauthenticated:
            return True
        return False
