"""The console in a real browser: a registry (PostgreSQL), a model server, an orchestrator and a
gateway run as processes; two tenants each register an ONNX model (A with two versions);
console/e2e/console.e2e.mjs drives Debian's chromium through playwright-core: sign in (a wrong key
refused), overview, models, try a model and see its output, deploy 90/10 (a 110 total refused, the
diff shown), a concurrent deployment change reported and not overwritten, a version uploaded from
a file, a pipeline with a validation error shown at its node then fixed, an asynchronous execution
watched until SUCCEEDED, a phone-width page, a tenant that does not see the other tenant's model,
an administrator's new key shown once then rotated (the old secret refused after a 1 s grace), and
the API reference. Screenshots of each step go to console/e2e/screenshots/ (git-ignored); the
failing step's screenshot is kept there as failed-<step>.png."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelserve_common.testing import ServiceProcess, databases, free_port
from modelserve_gateway.console import default_dir

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[4]
CONSOLE = ROOT / "console"
CHROMIUM = Path("/usr/bin/chromium")
ADMIN = "console-e2e-admin"
FEATURES = [5.1, 3.5, 1.4, 0.2]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "chromium is missing: run `make setup` (apt-get install chromium)"
    if not (CONSOLE / "node_modules" / "playwright-core").is_dir():
        return "console/node_modules is missing: run `make setup`"
    if not (default_dir() / "index.html").is_file():
        return "the console is not built: run `make setup`"
    return None


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ok(r: httpx.Response) -> dict[str, object]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, object] = r.json()
    return out


def _version(blob: Path) -> dict[str, object]:
    return {
        "artifactUri": blob.as_uri(),
        "artifactSha256": hashlib.sha256(blob.read_bytes()).hexdigest(),
        "backend": "onnx",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
        ],
    }


def _register(http: httpx.Client, key: str, name: str, blob: Path) -> None:
    h = {"x-api-key": key}
    _ok(http.post("/v1/models", json={"name": name}, headers=h))
    _ok(http.post(f"/v1/models/{name}/versions", json=_version(blob), headers=h))
    deployment = {"targets": [{"version": "1", "weight": 100}]}
    _ok(http.put(f"/v1/models/{name}/deployment", json=deployment, headers=h))
    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FEATURES}]}
    _wait(
        lambda: http.post(f"/v2/models/{name}/infer", json=body, headers=h).status_code == 200,
        60,
        f"{name} to serve",
    )


def test_console_in_chromium(tmp_path: Path) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shutil.copy(ROOT / "models/classifier/1/model.onnx", artifacts / "clf.onnx")
    reg_db, _ = databases.create_database()
    orch_db, _ = databases.create_database()
    ports = {n: free_port() for n in ("registry", "model_server", "gateway", "http", "orchestrator")}
    reg = f"127.0.0.1:{ports['registry']}"
    ms = f"127.0.0.1:{ports['model_server']}"
    common = {"MODELSERVE_DATA_DIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    specs = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATABASE_URL": reg_db,
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
            "REGISTRY_ARTIFACT_ROOTS": str(artifacts),
            "REGISTRY_ACCESS_LOG": "false",
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": reg,
            "MODEL_SERVER_ARTIFACT_ROOTS": str(artifacts),
            "MODEL_SERVER_DATA_DIR": str(tmp_path / "ms"),
            "MODEL_SERVER_ACCESS_LOG": "false",
        },
        "orchestrator": {
            "ORCHESTRATOR_GRPC_PORT": str(ports["orchestrator"]),
            "ORCHESTRATOR_METRICS_PORT": "-1",
            "ORCHESTRATOR_DATABASE_URL": orch_db,
            "ORCHESTRATOR_REDIS_URL": databases.redis_url(),
            "ORCHESTRATOR_REDIS_PREFIX": f"mstest:console:{time.time_ns()}:",
            "ORCHESTRATOR_REGISTRY_URL": reg,
            "ORCHESTRATOR_MODEL_SERVER_URL": ms,
            "ORCHESTRATOR_DATA_DIR": str(tmp_path / "orc"),
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
            "GATEWAY_ADMIN_API_KEY": ADMIN,
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_API_KEY_CACHE_TTL_S": "1",  # the rotated-out secret is refused soon after its grace
        },
    }
    procs = [
        ServiceProcess(f"modelserve_{n}", {**common, **e}, ports[n], cwd=tmp_path) for n, e in specs.items()
    ]
    shots = CONSOLE / "e2e" / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    try:
        for p in procs:
            p.start(timeout=90)
        base = f"http://127.0.0.1:{ports['http']}"
        admin = {"x-api-key": ADMIN}
        keys = {}
        with httpx.Client(base_url=base, timeout=20) as http:
            for t in ("ca", "cb"):
                _ok(http.post("/v1/tenants", json={"name": t}, headers=admin))
                made = http.post(
                    f"/v1/tenants/{t}/apiKeys",
                    json={"displayName": "console", "scopes": ["read", "write", "infer"]},
                    headers=admin,
                )
                keys[t] = str(_ok(made)["secret"])
            _register(http, keys["ca"], "console-a", artifacts / "clf.onnx")
            _register(http, keys["cb"], "console-b", artifacts / "clf.onnx")
            second = http.post(
                "/v1/models/console-a/versions",
                json=_version(artifacts / "clf.onnx"),
                headers={"x-api-key": keys["ca"]},
            )
            _ok(second)
        env = {
            **os.environ,
            "CONSOLE_URL": base,
            "KEY_A": keys["ca"],
            "KEY_B": keys["cb"],
            "MODEL_A": "console-a",
            "MODEL_B": "console-b",
            "ARTIFACT": str(artifacts / "clf.onnx"),
            "ADMIN_KEY": ADMIN,
            "TENANT_A": "ca",
            "SCREENSHOTS": str(shots),
        }
        proc = subprocess.run(
            ["node", "e2e/console.e2e.mjs"],
            cwd=CONSOLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        logs = "\n".join(f"--- {p.module}\n{p.output()[-2000:]}" for p in procs)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\nscreenshots: {shots}\n{logs}"
        assert "all steps passed" in proc.stdout
        assert (shots / "05-try-it.png").is_file() and (shots / "15-api-reference.png").is_file()
    finally:
        for p in procs:
            p.stop()
