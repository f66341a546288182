"""Gateway -> real registry (SQLite under a temp dir), both as subprocesses: the bootstrap admin
creates a tenant and a key through REST, the key works, another tenant's model is NOT_FOUND, and a
revocation reaches the gateway through Watch within a second."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from modelserve_common.testing import ServiceProcess, free_port

pytestmark = pytest.mark.e2e
ADMIN = "e2e-admin-secret"


def test_keys_tenants_and_revocation_through_the_real_registry(tmp_path: Path) -> None:
    reg_port = free_port()
    reg = ServiceProcess(
        "modelserve_registry",
        {
            "REGISTRY_GRPC_PORT": str(reg_port),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp_path),
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
        },
        reg_port,
        cwd=tmp_path,
    )
    gw_port, http_port = free_port(), free_port()
    gw = ServiceProcess(
        "modelserve_gateway",
        {
            "GATEWAY_GRPC_PORT": str(gw_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": reg.target,
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{free_port()}",
            "GATEWAY_ADMIN_API_KEY": ADMIN,
        },
        gw_port,
        cwd=tmp_path,
    )
    admin = {"authorization": f"Bearer {ADMIN}"}
    with (
        reg.start(timeout=60),
        gw.start(timeout=60),
        httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http,
    ):
        keys = {}
        for tenant in ("acme", "other"):
            r = http.post("/v1/tenants", json={"name": tenant}, headers=admin)
            assert r.status_code == 200, r.text
            r = http.post(
                f"/v1/tenants/{tenant}/apiKeys",
                json={"displayName": "ci", "scopes": ["read", "write"]},
                headers=admin,
            )
            assert r.status_code == 200, r.text
            keys[tenant] = (r.json()["apiKey"]["key"], r.json()["secret"])
        acme = {"x-api-key": keys["acme"][1]}
        other = {"x-api-key": keys["other"][1]}
        r = http.post("/v1/models", json={"name": "m1"}, headers=acme)
        assert r.status_code == 200, r.text
        assert r.json()["model"]["tenant"] == "acme"
        assert http.get("/v1/models/m1", headers=acme).status_code == 200
        r = http.get("/v1/models/m1", headers=other)
        assert r.status_code == 404, r.text
        assert http.get("/v1/models", headers={"x-api-key": "nope"}).status_code == 401
        # Revoke: the cached key stops working within a second.
        r = http.delete(f"/v1/tenants/acme/apiKeys/{keys['acme'][0]}", headers=admin)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 1.0
        status = 200
        while time.monotonic() < deadline:
            status = http.get("/v1/models", headers=acme).status_code
            if status == 401:
                break
            time.sleep(0.05)
        assert status == 401, gw.output()
        assert http.get("/v1/models", headers=other).status_code == 200
