"""Prediction logging through the REAL gateway (issue 18): the four services as processes on
PostgreSQL and Redis. Tenant A deploys a model with a logging policy over REST, infers, and reads
its logged requests and drift back; tenant B gets 404 for A's logs exactly like a missing model's,
and no tenant key writes logs through the gRPC front door (WritePredictionLogs is platform-only)."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing.suite import Suite, running_suite

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": "Bearer e2e-prediction-logs-admin"}
FEATURES = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, Path]]:
    tmp = tmp_path_factory.mktemp("prediction-logs")
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    shutil.copy(ROOT / "models/classifier/1/model.onnx", artifacts / "clf.onnx")
    overrides = {"model_server": {"MODEL_SERVER_PREDICTION_LOG_FLUSH_INTERVAL_S": "0.05"}}
    with running_suite(tmp, artifacts, ROOT / "models", "e2e-prediction-logs-admin", overrides) as s:
        yield s, artifacts


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, Any] = r.json()
    return out


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_tenant_reads_own_logs_and_drift_only(suite: tuple[Suite, Path]) -> None:
    s, artifacts = suite
    with httpx.Client(base_url=s.http_url, timeout=20) as h:
        keys = {}
        for t in ("pla", "plb"):
            _ok(h.post("/v1/tenants", json={"name": t}, headers=ADMIN))
            r = h.post(
                f"/v1/tenants/{t}/apiKeys",
                json={"displayName": "e2e", "scopes": ["infer", "read", "write"]},
                headers=ADMIN,
            )
            keys[t] = {"x-api-key": str(_ok(r)["secret"])}
        a, b = keys["pla"], keys["plb"]
        blob = artifacts / "clf.onnx"
        _ok(h.post("/v1/models", json={"name": "logged-clf"}, headers=a))
        version = {
            "artifactUri": blob.as_uri(),
            "artifactSha256": hashlib.sha256(blob.read_bytes()).hexdigest(),
            "backend": "onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
            ],
        }
        _ok(h.post("/v1/models/logged-clf/versions", json=version, headers=a))
        policy = {"sampleRatio": 1.0, "logRequest": True, "logResponse": True}
        deployment = {"targets": [{"version": "1", "weight": 100}], "predictionLogging": policy}
        dep = _ok(h.put("/v1/models/logged-clf/deployment", json=deployment, headers=a))
        assert dep["deployment"]["predictionLogging"]["sampleRatio"] == 1.0

        body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FEATURES}]}
        _wait(
            lambda: h.post("/v2/models/logged-clf/infer", json=body, headers=a).status_code == 200,
            60,
            "serving",
        )
        for _ in range(4):
            _ok(h.post("/v2/models/logged-clf/infer", json=body, headers=a))

        def logged() -> list[dict[str, Any]]:
            return list(_ok(h.get("/v1/models/logged-clf/predictionLogs", headers=a)).get("logs", []))

        _wait(lambda: len(logged()) >= 5, 30, "five logged requests")
        first = logged()[0]
        assert first["tenant"] == "pla" and first["inputs"][0]["name"] == "features" and first["outputs"]

        # B: A's logs and drift are hidden exactly like a missing model's
        hidden = h.get("/v1/models/logged-clf/predictionLogs", headers=b)
        missing = h.get("/v1/models/no-such-model/predictionLogs", headers=b)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["message"].replace("logged-clf", "X") == missing.json()["message"].replace(
            "no-such-model", "X"
        )
        assert h.get("/v1/models/logged-clf/versions/1:drift", headers=b).status_code == 404

        # A: a reference from the first five logged requests; the same inputs show no drift
        ref = _ok(
            h.post(
                "/v1/models/logged-clf/versions/1:setDriftReference",
                json={"fromLoggedRequests": 5},
                headers=a,
            )
        )
        assert ref["features"] == [f"features[{i}]" for i in range(4)]
        drift = _ok(h.get("/v1/models/logged-clf/versions/1:drift", headers=a))
        assert len(drift["features"]) == 4 and drift.get("maxScore", 0.0) < 0.1

    # no tenant key writes logs through the gRPC front door, whatever it holds
    with grpc.insecure_channel(f"127.0.0.1:{s.ports['gateway']}") as channel:
        stub = reg_grpc.RegistryServiceStub(channel)
        forged = reg_pb.PredictionLog(model="logged-clf", version=1, request_id="forged")
        with pytest.raises(grpc.RpcError) as exc:
            stub.WritePredictionLogs(
                reg_pb.WritePredictionLogsRequest(logs=[forged]),
                metadata=[("x-api-key", a["x-api-key"])],
                timeout=10,
            )
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
