"""One trace per request, across every process: the real registry, model server, orchestrator and
gateway run as processes with tracing on, exporting over OTLP/gRPC to a real TraceService receiver
(built from the opentelemetry-proto package) started by the test on a free port. One REST request
through a 2-node pipeline, sent by a tenant with a W3C traceparent, yields one trace: the gateway's
HTTP span is the client's child, the orchestrator's RunPipeline span is the gateway's grandchild (through the
gateway's client span), each pipeline node has its own span, and each node's model call reaches the
model server as a child of that node, with the batch it rode in recorded; the orchestrator's
registry look-ups (may the tenant use the model?) belong to the same trace. The answer
carries the trace id (``x-trace-id`` and ``traceparent`` headers). An asynchronous execution runs
in a trace of its own whose root span links to the creating request's span (the creator's trace
context is stored with the execution)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as infer_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as infer_grpc
from modelserve_common.testing import ServiceProcess, databases, free_port
from modelserve_common.testing.tracing import OtlpReceiver, ReceivedSpan

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "e2e-tracing-admin"
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}
TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CREATE_TRACE = "5b8efff798038103d269b633813fc60c"
FRONT_TRACE = "9c6d5e0f1a2b3c4d5e6f708192a3b4c5"
FEATURES = [5.1, 3.5, 1.4, 0.2]
RUN = "/modelserve.orchestrator.v1.OrchestratorService/RunPipeline"
INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Suite:
    http: httpx.Client
    receiver: OtlpReceiver
    gateway: str  # the gRPC front door's target
    procs: list[ServiceProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.module}\n{p.output()[-3000:]}" for p in self.procs)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("tracing")
    reg_db, _ = databases.create_database()
    orch_db, _ = databases.create_database()
    ports = {n: free_port() for n in ("registry", "model_server", "orchestrator", "gateway", "http")}
    reg_target = f"127.0.0.1:{ports['registry']}"
    ms_target = f"127.0.0.1:{ports['model_server']}"
    with OtlpReceiver() as receiver:
        common = {
            "MODELSERVE_DATA_DIR": str(tmp),
            "PYTHONWARNINGS": "ignore",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        }
        specs: dict[str, dict[str, str]] = {
            "registry": {
                "REGISTRY_TRACING_ENABLED": "true",
                "REGISTRY_GRPC_PORT": str(ports["registry"]),
                "REGISTRY_METRICS_PORT": "-1",
                "REGISTRY_DATABASE_URL": reg_db,
                "REGISTRY_ACCESS_LOG": "false",
            },
            "model_server": {
                "MODEL_SERVER_TRACING_ENABLED": "true",
                "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
                "MODEL_SERVER_METRICS_PORT": "-1",
                "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
                "MODEL_SERVER_REGISTRY_URL": reg_target,
                "MODEL_SERVER_DATA_DIR": str(tmp / "ms"),
                "MODEL_SERVER_ACCESS_LOG": "false",
                "MODEL_SERVER_SHARED_MODELS": "classifier",
            },
            "orchestrator": {
                "ORCHESTRATOR_TRACING_ENABLED": "true",
                "ORCHESTRATOR_GRPC_PORT": str(ports["orchestrator"]),
                "ORCHESTRATOR_METRICS_PORT": "-1",
                "ORCHESTRATOR_DATABASE_URL": orch_db,
                "ORCHESTRATOR_REDIS_URL": databases.redis_url(),
                "ORCHESTRATOR_REDIS_PREFIX": f"mstest:tracing:{time.time_ns()}:",
                "ORCHESTRATOR_REGISTRY_URL": reg_target,
                "ORCHESTRATOR_MODEL_SERVER_URL": ms_target,
                "ORCHESTRATOR_DATA_DIR": str(tmp / "orc"),
                "ORCHESTRATOR_ACCESS_LOG": "false",
            },
            "gateway": {
                "GATEWAY_TRACING_ENABLED": "true",
                "GATEWAY_GRPC_PORT": str(ports["gateway"]),
                "GATEWAY_HTTP_PORT": str(ports["http"]),
                "GATEWAY_METRICS_PORT": "-1",
                "GATEWAY_REGISTRY_URL": reg_target,
                "GATEWAY_MODEL_SERVER_URL": ms_target,
                "GATEWAY_ORCHESTRATOR_URL": f"127.0.0.1:{ports['orchestrator']}",
                "GATEWAY_ADMIN_API_KEY": ADMIN,
                "GATEWAY_ACCESS_LOG": "false",
            },
        }
        procs = [
            ServiceProcess(f"modelserve_{n}", {**common, **env}, ports[n], cwd=tmp)
            for n, env in specs.items()
        ]
        try:
            for p in procs:
                p.start(timeout=90)
            with httpx.Client(base_url=f"http://127.0.0.1:{ports['http']}", timeout=30) as http:
                yield Suite(http, receiver, f"127.0.0.1:{ports['gateway']}", procs)
        finally:
            for p in procs:
                p.stop()


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, Any] = r.json()
    return out


def _node(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": {
            "model": {"name": "classifier"},
            "inputs": [{"name": "features", "source": "inputs.x"}],
            "outputs": ["probabilities"],
        },
    }


def _wait_for_trace(s: Suite, trace_id: str, done: Any, timeout: float = 60) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    spans = s.receiver.trace(trace_id)
    while not done(spans) and time.monotonic() < deadline:
        time.sleep(0.1)
        spans = s.receiver.trace(trace_id)
    return spans


def _one(spans: list[ReceivedSpan], service: str, where: str, **match: str) -> ReceivedSpan:
    found = [x for x in spans if x.service == service and all(getattr(x, k) == v for k, v in match.items())]
    assert len(found) == 1, f"{where}: expected one {service} span {match}, got {found}"
    return found[0]


@pytest.fixture(scope="module")
def tenant_h(suite: Suite) -> dict[str, str]:
    """A tenant's key and its 2-node pipeline "traced" (both nodes call the shared local model)."""
    s = suite
    pipeline = {
        "name": "traced",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "nodes": [_node("n1"), _node("n2")],
        "outputs": [
            {"name": "a", "sources": ["n1.probabilities"]},
            {"name": "b", "sources": ["n2.probabilities"]},
        ],
    }
    _ok(s.http.post("/v1/tenants", json={"name": "traced"}, headers=ADMIN_H))
    key = _ok(
        s.http.post(
            "/v1/tenants/traced/apiKeys",
            json={"displayName": "e2e", "scopes": ["infer", "read", "write"]},
            headers=ADMIN_H,
        )
    )["secret"]
    _ok(s.http.post("/v1/pipelines", json=pipeline, headers={"x-api-key": key}))
    return {"x-api-key": key}


def _body() -> dict[str, Any]:
    raw = base64.b64encode(np.asarray([FEATURES], dtype="<f4").tobytes()).decode()
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "rawContents": raw}]}


def test_rest_request_through_a_two_node_pipeline_is_one_trace(
    suite: Suite, tenant_h: dict[str, str]
) -> None:
    s = suite
    r = s.http.post(
        "/v1/pipelines/traced:run",
        json=_body(),
        headers={**tenant_h, "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
    )
    assert _ok(r)["outputs"], r.text
    assert r.headers["x-trace-id"] == TRACE
    assert r.headers["traceparent"].startswith(f"00-{TRACE}-")

    def complete(spans: list[ReceivedSpan]) -> bool:
        """Every span the assertions below need has arrived (each process exports on its own)."""
        seen = [(x.service, x.name) for x in spans]
        orchestrator = {x.span_id for x in spans if x.service == "orchestrator"}
        return (
            seen.count(("gateway", RUN)) == 1
            and any(x.service == "gateway" and x.parent_id == CLIENT_SPAN for x in spans)
            and seen.count(("orchestrator", RUN)) == 1
            and sum(n.startswith("pipeline.node") for _, n in seen) == 2
            and seen.count(("orchestrator", INFER)) == 2
            and seen.count(("model_server", INFER)) == 2
            and any(x.service == "registry" and x.parent_id in orchestrator for x in spans)
        )

    spans = _wait_for_trace(s, TRACE, complete)
    assert complete(spans), f"trace incomplete: {[(x.service, x.name) for x in spans]}\n{s.logs()}"
    by_id = {x.span_id: x for x in spans}

    # gateway: its HTTP span continues the client's trace; its client span calls the orchestrator
    http_span = _one(spans, "gateway", "gateway HTTP span", parent_id=CLIENT_SPAN)
    assert http_span.name.startswith("POST ")
    run = [x for x in spans if x.service == "orchestrator" and x.name == RUN]
    assert len(run) == 1, [(x.service, x.name) for x in spans]
    gw_client = by_id[run[0].parent_id]
    assert gw_client.service == "gateway" and gw_client.parent_id == http_span.span_id

    # orchestrator: one span per node under the RunPipeline span; each node's model call reaches
    # the model server as that node's grandchild (through the orchestrator's client span)
    nodes = {x.attributes["pipeline.node"]: x for x in spans if x.name.startswith("pipeline.node")}
    assert set(nodes) == {"n1", "n2"}
    for node in nodes.values():
        assert node.service == "orchestrator" and node.parent_id == run[0].span_id
        assert node.attributes["pipeline.node.status"] == "SUCCEEDED"
        (call,) = [x for x in spans if x.parent_id == node.span_id]
        (infer,) = [x for x in spans if x.parent_id == call.span_id]
        assert infer.service == "model_server" and infer.name == INFER
        assert infer.attributes["modelserve.tenant"] == "traced"
        compute = [x for x in spans if x.name == "model.compute" and x.parent_id == infer.span_id]
        batched = "model.batch" in infer.events
        assert compute or batched, f"no batch record under {infer}"
        for c in compute:
            assert c.attributes["model"] == "classifier" and c.attributes["batch_size"] >= 1

    # every span of the request is in this one trace, and nothing dangles: each parent is known
    # (the client's span aside)
    assert all(x.parent_id in by_id or x.parent_id == CLIENT_SPAN for x in spans), [
        (x.service, x.name, x.parent_id) for x in spans if x.parent_id not in by_id
    ]
    # the registry look-ups (the orchestrator's "may the tenant use the model?") are in the trace
    lookups = [x for x in spans if x.service == "registry"]
    assert lookups, [(x.service, x.name) for x in spans]
    for lookup in lookups:
        assert _ancestors(lookup, by_id)[-1] is http_span
    # (the gateway's own key check may be among them, or answered from its cache)
    assert any(run[0] in _ancestors(lookup, by_id) for lookup in lookups)


def test_async_execution_spans_link_to_the_creating_request(suite: Suite, tenant_h: dict[str, str]) -> None:
    """An execution runs later, in a worker: its ``execution.run`` span starts a trace of its own
    (the creating request was answered long before) linked to the creating request's span, and
    the nodes and model calls of the run are in that trace."""
    s = suite
    r = s.http.post(
        "/v1/pipelines/traced/executions",
        json=_body(),
        headers={**tenant_h, "traceparent": f"00-{CREATE_TRACE}-{CLIENT_SPAN}-01"},
    )
    eid = _ok(r)["execution"]["execution"]
    assert r.headers["x-trace-id"] == CREATE_TRACE
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = _ok(s.http.get(f"/v1/executions/{eid}", headers=tenant_h))["execution"]["state"]
        if state not in ("EXECUTION_STATE_QUEUED", "EXECUTION_STATE_RUNNING"):
            break
        time.sleep(0.1)
    assert state == "EXECUTION_STATE_SUCCEEDED"

    def run_span() -> ReceivedSpan | None:
        found = [
            x
            for x in s.receiver.spans()
            if x.name == "execution.run" and x.attributes.get("execution.id") == eid
        ]
        return found[0] if found else None

    deadline = time.monotonic() + 60
    while run_span() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    run = run_span()
    assert run is not None, s.logs()
    assert run.service == "orchestrator" and run.parent_id == "" and run.trace_id != CREATE_TRACE
    creator = s.receiver.trace(CREATE_TRACE)
    create = [x for x in creator if x.service == "orchestrator" and x.name.endswith("/CreateExecution")]
    assert len(create) == 1, [(x.service, x.name) for x in creator]
    assert run.links == [(CREATE_TRACE, create[0].span_id)]
    spans = _wait_for_trace(
        s, run.trace_id, lambda sp: sum(x.service == "model_server" and x.name == INFER for x in sp) == 2
    )
    nodes = [x for x in spans if x.name.startswith("pipeline.node")]
    assert sorted(x.attributes["pipeline.node"] for x in nodes) == ["n1", "n2"]
    assert all(x.parent_id == run.span_id for x in nodes)
    assert sum(x.service == "model_server" and x.name == INFER for x in spans) == 2


def test_grpc_front_door_continues_the_trace_and_answers_its_id(
    suite: Suite, tenant_h: dict[str, str]
) -> None:
    s = suite
    x = np.asarray([FEATURES], dtype=np.float32)
    request = infer_pb.ModelInferRequest(
        model_name="classifier",
        inputs=[infer_pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[x.tobytes()],
    )
    with grpc.insecure_channel(s.gateway) as ch:
        _, call = infer_grpc.GRPCInferenceServiceStub(ch).ModelInfer.with_call(
            request,
            metadata=(*tenant_h.items(), ("traceparent", f"00-{FRONT_TRACE}-{CLIENT_SPAN}-01")),
            timeout=30,
        )
    assert dict(call.trailing_metadata())["x-trace-id"] == FRONT_TRACE

    def reached(sp: list[ReceivedSpan]) -> bool:
        """The model server's span and its whole chain up to the client's span have arrived."""
        ids = {x.span_id: x for x in sp}
        infers = [x for x in sp if x.service == "model_server" and x.name == INFER]
        return bool(infers) and (_ancestors(infers[0], ids) or [infers[0]])[-1].parent_id == CLIENT_SPAN

    spans = _wait_for_trace(s, FRONT_TRACE, reached)
    by_id = {x.span_id: x for x in spans}
    (infer,) = [x for x in spans if x.service == "model_server" and x.name == INFER]
    chain = _ancestors(infer, by_id)
    assert [x.service for x in chain] == ["gateway", "gateway"], [(x.service, x.name) for x in chain]
    assert chain[-1].parent_id == CLIENT_SPAN
    assert infer.attributes["modelserve.tenant"] == "traced"


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain: list[ReceivedSpan] = []
    while span.parent_id in by_id and len(chain) < 50:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain
