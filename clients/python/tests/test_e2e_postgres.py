"""One SDK run on PostgreSQL + Redis (registry and orchestrator on PostgreSQL, executions queued
in Redis): register -> deploy -> infer -> pipeline apply -> run -> submit -> wait -> key revoke."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from modelserve_client import Client

from .conftest import ADMIN, FEATURES, Suite, key_refused, model_ready, running_suite, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pg_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with running_suite(tmp_path_factory.mktemp("sdk-pg"), "postgres") as s:
        yield s


def test_sdk_flow_on_postgres_and_redis(pg_suite: Suite) -> None:
    s = pg_suite
    with Client(s.url, api_key=ADMIN, timeout=20) as admin:
        admin.create_tenant("pg-t")
        key = admin.create_key("pg-t", ["tenant-admin"])
        with Client(s.url, api_key=key["secret"], timeout=20) as c:
            c.create_model("pg-clf")
            c.create_version("pg-clf", **s.onnx_version_fields())
            c.deploy("pg-clf", 1)
            wait_until(lambda: model_ready(c, "pg-clf"), 60, "pg-clf ready")
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
    wait_until(lambda: key_refused(s.url, key["secret"]), 30, "revoked key refused")
