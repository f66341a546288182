"""Tenant isolation, tried as a hostile tenant would, through the REAL gateway (REST and gRPC) in
front of the real registry, model server and orchestrator, all four as processes on PostgreSQL and
Redis. Tenant A tries every path to tenant B's model and to a platform (local repository) model:
direct infer, stream infer, metadata, ready, config, statistics, repository index/load/unload,
registry reads and writes, aliases, deployments, pipeline nodes (at create, and at run, stream and
execution start after the name changed hands). Each attempt must fail as if the model did not
exist, and B's model-server statistics must show no call from A. Also: tenant keys cannot hold or
grant `admin`; `tenant-admin` stays inside its tenant; code-running versions need the tenant's
permission and an artifact under the allowed roots."""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as infer_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as infer_grpc
from modelserve_common.testing.suite import Suite as RunningSuite
from modelserve_common.testing.suite import running_suite

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "e2e-isolation-admin"
FEATURES = [5.1, 3.5, 1.4, 0.2]


@dataclass
class Suite:
    http: httpx.Client
    gateway: grpc.Channel
    model_server: grpc.Channel
    artifacts: Path
    running: RunningSuite

    def logs(self) -> str:
        return self.running.logs(3000)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("isolation")
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    shutil.copy(ROOT / "models/classifier/1/model.onnx", artifacts / "clf.onnx")
    shutil.copy(ROOT / "models/linear/1/model.py", artifacts / "linear.py")
    with (
        running_suite(tmp, artifacts, ROOT / "models", ADMIN) as running,
        httpx.Client(base_url=running.http_url, timeout=20) as http,
        grpc.insecure_channel(f"127.0.0.1:{running.ports['gateway']}") as gw,
        grpc.insecure_channel(f"127.0.0.1:{running.ports['model_server']}") as ms,
    ):
        yield Suite(http, gw, ms, artifacts, running)


ADMIN_H = {"authorization": f"Bearer {ADMIN}"}


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, Any] = r.json()
    return out


def _key(s: Suite, tenant: str, scopes: list[str]) -> str:
    r = s.http.post(
        f"/v1/tenants/{tenant}/apiKeys", json={"displayName": "e2e", "scopes": scopes}, headers=ADMIN_H
    )
    return str(_ok(r)["secret"])


def _register_onnx(s: Suite, headers: dict[str, str], name: str) -> None:
    blob = s.artifacts / "clf.onnx"
    _ok(s.http.post("/v1/models", json={"name": name}, headers=headers))
    _ok(
        s.http.post(
            f"/v1/models/{name}/versions",
            json={
                "artifactUri": blob.as_uri(),
                "artifactSha256": hashlib.sha256(blob.read_bytes()).hexdigest(),
                "backend": "onnx",
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
                ],
                "batching": {"maxBatchSize": 8},
            },
            headers=headers,
        )
    )
    _ok(
        s.http.put(
            f"/v1/models/{name}/deployment",
            json={"targets": [{"version": "1", "weight": 100}]},
            headers=headers,
        )
    )


def _infer_body() -> dict[str, Any]:
    return {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FEATURES}]}


def _infer_pb(model: str) -> infer_pb.ModelInferRequest:
    x = np.asarray([FEATURES], dtype=np.float32)
    return infer_pb.ModelInferRequest(
        model_name=model,
        inputs=[infer_pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[x.tobytes()],
    )


def _inference_count(s: Suite, model: str) -> int:
    """B's statistics read on the model server directly (a trusted in-cluster caller)."""
    stub = infer_grpc.GRPCInferenceServiceStub(s.model_server)
    stats = stub.ModelStatistics(infer_pb.ModelStatisticsRequest(name=model), timeout=10)
    return sum(int(m.inference_count) for m in stats.model_stats)


@pytest.fixture(scope="module")
def tenants(suite: Suite) -> dict[str, dict[str, str]]:
    s = suite
    for t in ("ta", "tb"):
        _ok(s.http.post("/v1/tenants", json={"name": t}, headers=ADMIN_H))
    a = {"x-api-key": _key(s, "ta", ["infer", "read", "write"])}
    b = {"x-api-key": _key(s, "tb", ["infer", "read", "write"])}
    _register_onnx(s, b, "b-clf")
    _register_onnx(s, a, "a-clf")
    for who, model in ((a, "a-clf"), (b, "b-clf")):
        _wait(
            lambda who=who, model=model: (
                s.http.post(  # type: ignore[misc]
                    f"/v2/models/{model}/infer", json=_infer_body(), headers=who
                ).status_code
                == 200
            ),
            60,
            f"{model} to serve\n{s.logs()}",
        )
    return {"a": a, "b": b}


FOREIGN = ("b-clf", "classifier")  # B's registry model, and a platform model no tenant owns


@pytest.mark.parametrize("model", FOREIGN)
def test_rest_inference_paths_to_a_foreign_model_are_not_found(
    suite: Suite, tenants: dict[str, dict[str, str]], model: str
) -> None:
    a = tenants["a"]
    before = _inference_count(suite, "b-clf")
    h = suite.http
    assert h.post(f"/v2/models/{model}/infer", json=_infer_body(), headers=a).status_code == 404
    assert h.post(f"/v2/models/{model}/versions/1/infer", json=_infer_body(), headers=a).status_code == 404
    assert h.get(f"/v2/models/{model}", headers=a).status_code == 404
    assert h.get(f"/v2/models/{model}/ready", headers=a).status_code == 404
    assert h.get(f"/v2/models/{model}/config", headers=a).status_code == 404
    assert h.get(f"/v2/models/{model}/stats", headers=a).status_code == 404
    names = {st["name"] for st in _ok(h.get("/v2/models/stats", headers=a)).get("model_stats", [])}
    assert model not in names and "a-clf" in names
    assert h.post("/v2/repository/index", json={}, headers=a).status_code == 403
    assert h.post(f"/v2/repository/models/{model}/unload", json={}, headers=a).status_code == 403
    assert h.post(f"/v2/repository/models/{model}/load", json={}, headers=a).status_code == 403
    # the same answer as a model that does not exist at all
    missing = h.post("/v2/models/no-such-model/infer", json=_infer_body(), headers=a)
    foreign = h.post(f"/v2/models/{model}/infer", json=_infer_body(), headers=a)
    assert foreign.json()["error"].replace(model, "X") == missing.json()["error"].replace(
        "no-such-model", "X"
    )
    assert _inference_count(suite, "b-clf") == before


@pytest.mark.parametrize("model", FOREIGN)
def test_grpc_front_door_paths_to_a_foreign_model_are_not_found(
    suite: Suite, tenants: dict[str, dict[str, str]], model: str
) -> None:
    md = [("x-api-key", tenants["a"]["x-api-key"])]
    stub = infer_grpc.GRPCInferenceServiceStub(suite.gateway)
    before = _inference_count(suite, "b-clf")
    calls: list[tuple[Callable[..., Any], Any]] = [
        (stub.ModelInfer, _infer_pb(model)),
        (stub.ModelMetadata, infer_pb.ModelMetadataRequest(name=model)),
        (stub.ModelReady, infer_pb.ModelReadyRequest(name=model)),
        (stub.ModelConfig, infer_pb.ModelConfigRequest(name=model)),
        (stub.ModelStatistics, infer_pb.ModelStatisticsRequest(name=model)),
    ]
    for call, request in calls:
        with pytest.raises(grpc.RpcError) as exc:
            call(request, metadata=md, timeout=10)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND, (call, exc.value.details())
    for call, request in (
        (stub.RepositoryIndex, infer_pb.RepositoryIndexRequest()),
        (stub.RepositoryModelLoad, infer_pb.RepositoryModelLoadRequest(model_name=model)),
        (stub.RepositoryModelUnload, infer_pb.RepositoryModelUnloadRequest(model_name=model)),
    ):
        with pytest.raises(grpc.RpcError) as exc:
            call(request, metadata=md, timeout=10)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED, (call, exc.value.details())
    all_stats = stub.ModelStatistics(infer_pb.ModelStatisticsRequest(), metadata=md, timeout=10)
    assert model not in {m.name for m in all_stats.model_stats}
    # A stream mixing A's model and the foreign one: every message answered, in order, none lost.
    responses = list(
        stub.ModelStreamInfer(
            iter([_infer_pb("a-clf"), _infer_pb(model), _infer_pb("a-clf")]), metadata=md, timeout=20
        )
    )
    assert len(responses) == 3, [r.error_message for r in responses]
    assert not responses[0].error_message and responses[0].infer_response.outputs
    assert "not found" in responses[1].error_message.lower()
    assert not responses[2].error_message and responses[2].infer_response.outputs
    assert _inference_count(suite, "b-clf") == before


def test_registry_paths_to_another_tenants_model_are_not_found(
    suite: Suite, tenants: dict[str, dict[str, str]]
) -> None:
    a, h = tenants["a"], suite.http
    assert h.get("/v1/models/b-clf", headers=a).status_code == 404
    assert h.get("/v1/models/b-clf/versions", headers=a).status_code == 404
    assert h.get("/v1/models/b-clf/deployment", headers=a).status_code == 404
    assert h.put("/v1/models/b-clf/aliases/mine", json={"version": "1"}, headers=a).status_code == 404
    r = h.put(
        "/v1/models/b-clf/deployment",
        json={"targets": [{"version": "1", "weight": 100}, {"version": "1", "mirror": True}]},
        headers=a,
    )
    assert r.status_code == 404, r.text
    listed = {m["name"] for m in _ok(h.get("/v1/models", headers=a)).get("models", [])}
    assert "b-clf" not in listed and "a-clf" in listed
    # the global name is taken, and the answer does not say by whom
    r = h.post("/v1/models", json={"name": "b-clf"}, headers=a)
    assert r.status_code == 409 and "tb" not in r.text


def _pipeline(name: str, model: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "nodes": [
            {
                "name": "n1",
                "model": {
                    "model": {"name": model},
                    "inputs": [{"name": "features", "source": "inputs.x"}],
                    "outputs": ["probabilities"],
                },
            }
        ],
        "outputs": [{"name": "p", "sources": ["n1.probabilities"]}],
    }


def _run_body() -> dict[str, Any]:
    raw = base64.b64encode(np.asarray([FEATURES], dtype="<f4").tobytes()).decode()
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "rawContents": raw}]}


def test_pipelines_cannot_reach_a_foreign_model_at_create_or_run(
    suite: Suite, tenants: dict[str, dict[str, str]]
) -> None:
    a, b, h = tenants["a"], tenants["b"], suite.http
    before = _inference_count(suite, "b-clf")
    for model in FOREIGN:
        r = h.post("/v1/pipelines", json=_pipeline(f"steal-{model}", model), headers=a)
        assert r.status_code == 404, r.text
        assert "n1" in r.text
    # A's own model works; then the name changes hands: A undeploys and deletes it, B takes it.
    _ok(h.post("/v1/pipelines", json=_pipeline("a-pipe", "a-clf"), headers=a))
    ran = _ok(h.post("/v1/pipelines/a-pipe:run", json=_run_body(), headers=a))
    assert ran["outputs"], ran
    _ok(h.put("/v1/models/a-clf/deployment", json={"targets": []}, headers=a))
    _ok(h.delete("/v1/models/a-clf", headers=a))
    _register_onnx(suite, b, "a-clf")
    _wait(
        lambda: h.post("/v2/models/a-clf/infer", json=_infer_body(), headers=b).status_code == 200,
        60,
        "B's a-clf to serve",
    )
    taken = _inference_count(suite, "a-clf")
    r = h.post("/v1/pipelines/a-pipe:run", json=_run_body(), headers=a)
    assert r.status_code == 404, r.text
    r = h.post("/v1/pipelines/a-pipe:stream", json=_run_body(), headers=a)
    assert r.status_code == 404 or '"error"' in r.text, r.text
    ex = _ok(h.post("/v1/pipelines/a-pipe/executions", json=_run_body(), headers=a))["execution"]

    def finished() -> bool:
        state = _ok(h.get(f"/v1/executions/{ex['execution']}", headers=a))["execution"]["state"]
        return state not in ("EXECUTION_STATE_QUEUED", "EXECUTION_STATE_RUNNING")

    _wait(finished, 60, "the execution to finish")
    done = _ok(h.get(f"/v1/executions/{ex['execution']}", headers=a))["execution"]
    assert done["state"] == "EXECUTION_STATE_FAILED", done
    assert _inference_count(suite, "a-clf") == taken  # B's model never ran for A
    assert _inference_count(suite, "b-clf") == before


def test_tenant_keys_cannot_hold_or_grant_platform_admin(
    suite: Suite, tenants: dict[str, dict[str, str]]
) -> None:
    h = suite.http
    r = h.post("/v1/tenants/ta/apiKeys", json={"displayName": "x", "scopes": ["admin"]}, headers=ADMIN_H)
    assert r.status_code == 400, r.text
    ta_admin = {"x-api-key": _key(suite, "ta", ["tenant-admin"])}
    r = h.post("/v1/tenants/ta/apiKeys", json={"displayName": "x", "scopes": ["admin"]}, headers=ta_admin)
    assert r.status_code == 400, r.text
    # inside its tenant it manages keys ...
    _ok(h.post("/v1/tenants/ta/apiKeys", json={"displayName": "ci", "scopes": ["infer"]}, headers=ta_admin))
    assert _ok(h.get("/v1/tenants/ta/apiKeys", headers=ta_admin))["apiKeys"]
    # ... and sees nothing of another tenant, nor the platform
    assert h.get("/v1/tenants/tb/apiKeys", headers=ta_admin).status_code == 404
    r = h.post("/v1/tenants/tb/apiKeys", json={"displayName": "x", "scopes": ["infer"]}, headers=ta_admin)
    assert r.status_code == 404, r.text
    assert h.get("/v1/tenants", headers=ta_admin).status_code == 403
    assert h.post("/v1/tenants", json={"name": "evil"}, headers=ta_admin).status_code == 403
    assert h.get("/v1/models/b-clf", headers=ta_admin).status_code == 404


def test_code_running_versions_need_the_permission_and_an_allowed_root(
    suite: Suite, tenants: dict[str, dict[str, str]]
) -> None:
    a, h = tenants["a"], suite.http
    blob = suite.artifacts / "linear.py"
    body = {
        "artifactUri": blob.as_uri(),
        "artifactSha256": hashlib.sha256(blob.read_bytes()).hexdigest(),
        "backend": "python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    }
    _ok(h.post("/v1/models", json={"name": "a-code"}, headers=a))
    r = h.post("/v1/models/a-code/versions", json=body, headers=a)
    assert r.status_code == 403 and "code_execution_allowed" in r.text, r.text
    r = h.patch("/v1/tenants/ta", json={"codeExecutionAllowed": True}, headers=a)
    assert r.status_code == 403, r.text  # a tenant cannot grant itself the permission
    _ok(h.patch("/v1/tenants/ta", json={"codeExecutionAllowed": True}, headers=ADMIN_H))
    outside = {**body, "artifactUri": (ROOT / "models/linear/1/model.py").as_uri()}
    r = h.post("/v1/models/a-code/versions", json=outside, headers=a)
    assert r.status_code == 400, r.text
    assert body["artifactSha256"] not in r.text
    _ok(h.post("/v1/models/a-code/versions", json=body, headers=a))
    for uri in ("file:///etc/shadow", "file:///proc/self/environ", f"{suite.artifacts.as_uri()}/../x"):
        r = h.post("/v1/models/a-code/versions", json={**body, "artifactUri": uri}, headers=a)
        assert r.status_code == 400, (uri, r.text)
