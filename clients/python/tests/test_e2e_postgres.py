"""One SDK run on PostgreSQL + Redis (registry and orchestrator on PostgreSQL, executions queued
in Redis): register -> deploy -> infer -> pipeline apply -> run -> submit -> wait -> key revoke."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from modelserve_client import Client, NotFound, Unauthenticated

from .conftest import ADMIN, FEATURES, Suite, start_suite, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pg_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    s, procs = start_suite(tmp_path_factory.mktemp("sdk-pg"), "postgres")
    try:
        for p in procs:
            p.start(timeout=90)
        yield s
    finally:
        for p in procs:
            p.stop()


def test_sdk_flow_on_postgres_and_redis(pg_suite: Suite) -> None:
    s = pg_suite
    with Client(s.url, api_key=ADMIN, timeout=20) as admin:
        admin.create_tenant("pg-t")
        key = admin.create_key("pg-t", ["tenant-admin"])
        with Client(s.url, api_key=key["secret"], timeout=20) as c:
            c.create_model("pg-clf")
            c.create_version("pg-clf", **s.onnx_version_fields())
            c.deploy("pg-clf", 1)

            def ready() -> bool:
                try:
                    return bool(c.model_ready("pg-clf"))
                except NotFound:
                    return False

            wait_until(ready, 60, "pg-clf ready")
            x = np.asarray(FEATURES, np.float32)
            label = c.infer("pg-clf", {"features": x})["label"]
            node = {
                "model": {"name": "pg-clf"},
                "inputs": [{"name": "features", "source": "inputs.features"}],
                "outputs": ["label"],
            }
            c.apply(
                {
                    "name": "pg-pipe",
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                    "nodes": [{"name": "clf", "model": node}],
                    "outputs": [{"name": "label", "sources": ["clf.label"]}],
                }
            )
            assert c.run("pg-pipe", {"features": x})["outputs"]["label"].tolist() == label.tolist()
            ex = c.submit("pg-pipe", {"features": x}, idempotency_key="pg-1")
            done = c.wait(ex["execution"], timeout=60)
            assert done["state"] == "EXECUTION_STATE_SUCCEEDED"
            assert done["outputs"]["label"].tolist() == label.tolist()
        admin.revoke_key("pg-t", key["api_key"]["key"])

    def refused() -> bool:
        with Client(s.url, api_key=key["secret"], timeout=10) as c:
            try:
                c.list_deployments()
            except Unauthenticated:
                return True
            return False

    wait_until(refused, 30, "revoked key refused")
