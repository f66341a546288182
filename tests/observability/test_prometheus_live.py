"""A real Prometheus (Debian's package) scrapes the four services started as processes (metrics on
free ports), the test sends traffic through the gateway (REST inference as the admin and as a
rate-limited tenant key, unauthenticated requests, registry writes, a pipeline run synchronously
and as an execution), then evaluates every dashboard query and every alert expression through
Prometheus' HTTP API: each dashboard query returns data; an alert expression that is empty
(healthy) reads only metric names Prometheus has."""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from promlib import (
    ROOT,
    Prometheus,
    alert_rules,
    concrete,
    dashboard_queries,
    metric_names,
    poll,
    tool,
)

from modelserve_common.testing import free_port
from modelserve_common.testing.suite import running_suite

pytestmark = pytest.mark.e2e

ADMIN = "observability-admin"
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}
MODEL = "classifier"  # a local repository model, shared with tenants below
FEATURES = [5.1, 3.5, 1.4, 0.2]

# Dashboard panels that need a feature this test does not switch on; their metric names are
# checked against the owning service's /metrics exposition instead (a labelled metric with no
# series yet still has its HELP/TYPE lines there).
NEEDS_SETUP = {
    "Feature drift (PSI)": "needs a drift reference and logged predictions (prediction logging)",
    "Prediction log records/s by sink": "needs a deployment with a prediction-logging policy",
}


@dataclass
class Live:
    http: httpx.Client
    metrics: dict[str, int]  # service label -> metrics port
    prom: Prometheus


def _overrides(metrics: dict[str, int]) -> dict[str, dict[str, str]]:
    """On top of the e2e suite's settings (PostgreSQL, Redis): metrics on free ports, the local
    classifier shared with tenants, fast gauge sampling, a default per-key rate limit."""
    return {
        "registry": {"REGISTRY_METRICS_PORT": str(metrics["registry"])},
        "model_server": {
            "MODEL_SERVER_METRICS_PORT": str(metrics["model-server"]),
            "MODEL_SERVER_SHARED_MODELS": MODEL,
        },
        "orchestrator": {
            "ORCHESTRATOR_METRICS_PORT": str(metrics["orchestrator"]),
            "ORCHESTRATOR_METRICS_INTERVAL_S": "0.5",
        },
        "gateway": {
            "GATEWAY_METRICS_PORT": str(metrics["gateway"]),
            "GATEWAY_DEFAULT_RATE_LIMIT_RPS": "1000",
        },
    }


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    binary = tool("prometheus")
    tmp = tmp_path_factory.mktemp("observability")
    (tmp / "artifacts").mkdir()
    metrics = {s: free_port() for s in ("registry", "model-server", "orchestrator", "gateway")}
    with running_suite(tmp, tmp / "artifacts", ROOT / "models", ADMIN, _overrides(metrics)) as running:
        prom = Prometheus(binary, tmp, metrics)
        try:
            prom.wait_ready(60)
            with httpx.Client(base_url=running.http_url, timeout=30) as http:
                yield Live(http, metrics, prom)
        finally:
            prom.stop()


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, Any] = r.json()
    return out


def _pipeline() -> dict[str, Any]:
    return {
        "name": "obs-pipe",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "nodes": [
            {
                "name": "n1",
                "model": {
                    "model": {"name": MODEL},
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


def _traffic(h: httpx.Client) -> None:
    infer = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FEATURES}]}
    _ok(h.post("/v1/tenants", json={"name": "obs"}, headers=ADMIN_H))
    key = _ok(
        h.post(
            "/v1/tenants/obs/apiKeys",
            json={"displayName": "obs", "scopes": ["infer", "read", "write"]},
            headers=ADMIN_H,
        )
    )
    tenant_h = {"x-api-key": str(key["secret"])}
    _ok(h.post("/v1/models", json={"name": "obs-model"}, headers=tenant_h))
    for _ in range(5):
        _ok(h.post(f"/v2/models/{MODEL}/infer", json=infer, headers=ADMIN_H))
        _ok(h.post(f"/v2/models/{MODEL}/infer", json=infer, headers=tenant_h))
    assert h.post(f"/v2/models/{MODEL}/infer", json=infer).status_code == 401
    assert h.get("/v1/models", headers={"x-api-key": "not-a-key"}).status_code == 401
    _ok(h.post("/v1/pipelines", json=_pipeline(), headers=ADMIN_H))
    assert _ok(h.post("/v1/pipelines/obs-pipe:run", json=_run_body(), headers=ADMIN_H))["outputs"]
    ex = _ok(h.post("/v1/pipelines/obs-pipe/executions", json=_run_body(), headers=ADMIN_H))["execution"]

    def finished() -> bool:
        state = _ok(h.get(f"/v1/executions/{ex['execution']}", headers=ADMIN_H))["execution"]["state"]
        return state not in ("EXECUTION_STATE_QUEUED", "EXECUTION_STATE_RUNNING")

    assert poll(finished, 60), "the execution did not finish"


@pytest.fixture(scope="module")
def after_traffic(suite: Live) -> Live:
    up = poll(lambda: len([r for r in suite.prom.query("up == 1")]) == 4 or None, 60)
    assert up, f"targets not all up: {suite.prom.query('up')}"
    _traffic(suite.http)
    return suite


def _exported(name: str, exposition: str) -> bool:
    """Whether ``name`` (a sample name: counters end in _total, histograms in _bucket...) has its
    TYPE line in ``exposition``."""
    bases = {name} | {name.removesuffix(s) for s in ("_total", "_bucket", "_sum", "_count")}
    return any(f"# TYPE {base} " in exposition for base in bases)


def _exposition(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text: str = r.read().decode()
        return text


def test_every_dashboard_query_returns_data(after_traffic: Live) -> None:
    prom = after_traffic.prom
    missing: list[str] = []
    deadline = time.monotonic() + 90
    for q in dashboard_queries():
        if q.panel in NEEDS_SETUP:
            continue
        expr = concrete(q.expr, MODEL)
        if not poll(lambda e=expr: prom.query(e), max(1.0, deadline - time.monotonic())):
            missing.append(f"{q.dashboard} / {q.panel}: {expr}")
    assert not missing, "dashboard queries without data:\n" + "\n".join(missing)


def test_panels_that_need_setup_use_exported_metric_names(after_traffic: Live) -> None:
    exposed = "".join(_exposition(port) for port in after_traffic.metrics.values())
    for q in dashboard_queries():
        if q.panel in NEEDS_SETUP:
            for name in metric_names(q.expr):
                assert _exported(name, exposed), f"{q.panel} ({NEEDS_SETUP[q.panel]}): {name} is not exported"


def test_every_alert_expression_evaluates_and_reads_existing_metrics(after_traffic: Live) -> None:
    prom = after_traffic.prom
    exposed = "".join(_exposition(port) for port in after_traffic.metrics.values())
    known = poll(lambda: prom.names() >= {"modelserve_ready", "up"} and prom.names(), 30)
    problems: list[str] = []
    for rule in alert_rules():
        result = prom.query(rule["expr"])  # evaluates (a syntax or type error fails here)
        if result:
            continue  # firing on a fresh suite would itself be worth a look, but it does read data
        for name in metric_names(rule["expr"]):
            if name in known:
                continue
            # a labelled metric nothing has observed yet (a drift score, a limiter error):
            # its name must at least be exported
            if not _exported(name, exposed):
                problems.append(f"{rule['alert']}: {name}")
    assert not problems, "alert expressions read metrics nobody exports:\n" + "\n".join(problems)


def test_no_alert_fires_on_a_healthy_suite(after_traffic: Live) -> None:
    firing = after_traffic.prom.query('ALERTS{alertstate="firing"}')
    assert not firing, firing


# (PromQL, what the traffic above must have produced) - values, not just presence
EXPECTED = (
    (
        'sum(modelserve_gateway_requests_total{tenant="obs", code="200"})',
        5,
        "the tenant's requests by tenant",
    ),
    ('sum(modelserve_gateway_auth_failures_total{reason="missing_credentials"})', 1, "no credentials"),
    ('sum(modelserve_gateway_auth_failures_total{reason="invalid_api_key"})', 1, "a wrong key"),
    ('sum(modelserve_gateway_rate_limit_decisions_total{scope="key", decision="allowed"})', 5, "key limits"),
    ('sum(grpc_client_handled_total{service="gateway", grpc_code="OK"})', 10, "upstream calls"),
    ("sum(modelserve_registry_writes_total)", 3, "tenant, key and model writes"),
    ("sum(modelserve_registry_watch_streams)", 1, "the model server's registry follower"),
    (
        'sum(modelserve_orchestrator_node_seconds_count{pipeline="obs-pipe", node="n1", status="SUCCEEDED"})',
        2,
        "run + execution",
    ),
    (
        'max(modelserve_orchestrator_executions{state="SUCCEEDED"})',
        1,
        "the execution, sampled from the database",
    ),
    ('sum(modelserve_model_server_requests_total{model="classifier", outcome="success"})', 12, "inferences"),
    ("min(modelserve_ready)", 1, "every service SERVING"),
    (
        'sum(modelserve_db_operation_seconds_count{service="registry", dialect="postgresql"})',
        1,
        "registry database work",
    ),
    ('max(modelserve_db_pool_max_connections{service="orchestrator"})', 1, "the orchestrator's pool size"),
)


def test_metrics_count_what_the_traffic_did(after_traffic: Live) -> None:
    prom = after_traffic.prom
    wrong = []
    for expr, at_least, what in EXPECTED:
        result = poll(lambda e=expr, n=at_least: [r for r in prom.query(e) if float(r["value"][1]) >= n], 30)
        if not result:
            wrong.append(f"{what}: {expr} = {prom.query(expr)} (expected >= {at_least})")
    assert not wrong, "\n".join(wrong)
