"""The console in a real browser: a registry (PostgreSQL), a model server, an orchestrator and a
gateway run as processes; two tenants each register an ONNX model (A with two versions);
console/e2e/console.e2e.mjs drives Debian's chromium through playwright-core: sign in (a wrong key
refused), overview, models, try a model and see its output, the overview's live charts (p50/p99
latency, queue time and batch size from the statistics) after traffic, deploy 90/10 (a 110 total refused, the
diff shown), a concurrent deployment change reported and not overwritten, a version uploaded from
a file, a pipeline with a validation error shown at its node then fixed, an asynchronous execution
watched until SUCCEEDED, a phone-width page, a JWT user of tenant B signed in who sees only tenant
B's model and statistics, a tenant that does not see the other tenant's model,
deleting a model (refused while deployed, then undeployed and deleted), an administrator's new key
shown once then rotated (the old secret refused after a 1 s grace), and the API reference.
Screenshots of each step go to console/e2e/screenshots/ (git-ignored); the failing step's
screenshot is kept there as failed-<step>.png."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from modelserve_common.testing.suite import running_suite
from modelserve_gateway.console import default_dir

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[4]
CONSOLE = ROOT / "console"
CHROMIUM = Path("/usr/bin/chromium")
ADMIN = "console-e2e-admin"
FEATURES = [5.1, 3.5, 1.4, 0.2]
JWT_KEY = "console-e2e-jwt-signing-key-of-32+-bytes"
JWT_ISSUER = "https://issuer.console-e2e.example"


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


def _jwt(tenant: str) -> str:
    """A tenant user's token as an identity provider would sign it (HS256, the gateway's key)."""
    claims = {
        "sub": f"console-jwt-user@{tenant}",
        "tenant": tenant,
        "scope": "read write infer",
        "iss": JWT_ISSUER,
        "exp": int(time.time()) + 900,
    }
    return jwt.encode(claims, JWT_KEY, algorithm="HS256")


def test_console_in_chromium(tmp_path: Path) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    blob = artifacts / "clf.onnx"
    shutil.copy(ROOT / "models/classifier/1/model.onnx", blob)
    # a rotated-out secret is refused soon after its grace (the gateway's key cache)
    overrides = {
        "gateway": {
            "GATEWAY_API_KEY_CACHE_TTL_S": "1",
            "GATEWAY_JWT_ALGORITHM": "HS256",
            "GATEWAY_JWT_KEY": JWT_KEY,
            "GATEWAY_JWT_ISSUER": JWT_ISSUER,
        }
    }
    shots = CONSOLE / "e2e" / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    with running_suite(tmp_path, artifacts, ROOT / "models", ADMIN, overrides) as suite:
        keys = {}
        with httpx.Client(base_url=suite.http_url, timeout=20) as http:
            for t in ("ca", "cb"):
                _ok(http.post("/v1/tenants", json={"name": t}, headers={"x-api-key": ADMIN}))
                made = http.post(
                    f"/v1/tenants/{t}/apiKeys",
                    json={"displayName": "console", "scopes": ["read", "write", "infer"]},
                    headers={"x-api-key": ADMIN},
                )
                keys[t] = str(_ok(made)["secret"])
            _register(http, keys["ca"], "console-a", blob)
            _register(http, keys["cb"], "console-b", blob)
            second = http.post(
                "/v1/models/console-a/versions", json=_version(blob), headers={"x-api-key": keys["ca"]}
            )
            _ok(second)
        env = {
            **os.environ,
            "CONSOLE_URL": suite.http_url,
            "KEY_A": keys["ca"],
            "KEY_B": keys["cb"],
            "MODEL_A": "console-a",
            "MODEL_B": "console-b",
            "ARTIFACT": str(blob),
            "ADMIN_KEY": ADMIN,
            "TENANT_A": "ca",
            "JWT_B": _jwt("cb"),
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
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\nscreenshots: {shots}\n{suite.logs()}"
        assert "all steps passed" in proc.stdout
        assert (shots / "05-try-it.png").is_file() and (shots / "16-api-reference.png").is_file()
