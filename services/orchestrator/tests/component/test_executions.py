"""Asynchronous executions over the wire: completion, idempotency keys, cancellation, watch,
webhooks (Standard Webhooks signatures verified by a receiver written from the spec, retries,
410, SSRF refusals) on SQLite + in-process queue and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest
from orchestrator_test_helpers import outputs, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb

X = [1.0, 2.0]
SECRET_OLD = "whsec_" + base64.b64encode(b"old-secret-bytes").decode()
SECRET_NEW = "whsec_" + base64.b64encode(b"new-secret-bytes").decode()
TERMINAL = {pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_FAILED, pb.EXECUTION_STATE_CANCELLED}


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """A Standard Webhooks verifier written from the spec."""
    msg_id, ts, sigs = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    if abs(time.time() - int(ts)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    return any(
        s.startswith("v1,") and hmac.compare_digest(s.removeprefix("v1,"), expected) for s in sigs.split(" ")
    )


class Receiver:
    """A real HTTP receiver on 127.0.0.1 answering with a scripted list of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                )
                status = outer.statuses.pop(0) if outer.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


async def wait_terminal(orch: Any, eid: str, within_s: float = 15.0) -> pb.Execution:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        ex = (await orch.stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
        if ex.state in TERMINAL:
            return ex
        await asyncio.sleep(0.05)
    raise TimeoutError(f"execution {eid} not terminal")


async def deliveries_settled(
    orch: Any, eid: str, n: int = 1, within_s: float = 10.0
) -> list[pb.WebhookDelivery]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        ds = (
            await orch.stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(execution=eid))
        ).deliveries
        if len(ds) >= n and all(d.state != pb.DELIVERY_STATE_PENDING for d in ds):
            return list(ds)
        await asyncio.sleep(0.05)
    raise TimeoutError("deliveries not settled")


def create_req(name: str, **kw: Any) -> pb.CreateExecutionRequest:
    return pb.CreateExecutionRequest(pipeline=name, inputs=[tensor("x", kw.pop("x", X))], **kw)


async def test_execution_runs_to_success_with_trace_and_outputs(orch: Any) -> None:
    await orch.stub.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("p", ["double", "add_one"]))
    )
    created = await orch.stub.CreateExecution(create_req("p"))
    assert created.execution.state == pb.EXECUTION_STATE_QUEUED and not created.replayed
    ex = await wait_terminal(orch, created.execution.execution)
    assert ex.state == pb.EXECUTION_STATE_SUCCEEDED and ex.pipeline_version == 1 and ex.attempts == 1
    np.testing.assert_allclose(outputs(ex)["y"], np.array(X) * 2 + 1)
    assert [t.node for t in ex.trace] == ["n0", "n1"]
    listed = await orch.stub.ListExecutions(
        pb.ListExecutionsRequest(pipeline="p", state=pb.EXECUTION_STATE_SUCCEEDED)
    )
    assert [e.execution for e in listed.executions] == [ex.execution]


async def test_execution_hard_failure_is_failed(orch: Any) -> None:
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("f", ["broken"])))
    created = await orch.stub.CreateExecution(create_req("f"))
    ex = await wait_terminal(orch, created.execution.execution)
    assert ex.state == pb.EXECUTION_STATE_FAILED and "node 'n0' failed" in ex.error


async def test_idempotency_key_returns_same_execution_and_refuses_other_payload(orch: Any) -> None:
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("idem", ["double"])))
    results = await asyncio.gather(
        *(orch.stub.CreateExecution(create_req("idem", idempotency_key="key-1")) for _ in range(20))
    )
    ids = {r.execution.execution for r in results}
    assert len(ids) == 1
    assert sum(not r.replayed for r in results) == 1
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await orch.stub.CreateExecution(create_req("idem", idempotency_key="key-1", x=[9.0]))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "used for a different request" in exc.value.details()
    listed = await orch.stub.ListExecutions(pb.ListExecutionsRequest(pipeline="idem"))
    assert len(listed.executions) == 1


async def test_cancel_running_execution_stops_it_and_notifies(
    orch: Any, models: Any, receiver: Receiver
) -> None:
    p = sequence_pipeline("c", ["double", "add_one"])
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=p))
    models.servicer.delay_s["double"] = 1.0
    created = await orch.stub.CreateExecution(
        create_req("c", webhook=pb.Webhook(url=receiver.url, secrets=[SECRET_NEW]))
    )
    eid = created.execution.execution
    deadline = time.monotonic() + 5
    while (
        await orch.stub.GetExecution(pb.GetExecutionRequest(execution=eid))
    ).execution.state != pb.EXECUTION_STATE_RUNNING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    cancelled = await orch.stub.CancelExecution(pb.CancelExecutionRequest(execution=eid, reason="user asked"))
    assert cancelled.execution.state == pb.EXECUTION_STATE_CANCELLED
    assert cancelled.execution.error == "cancelled: user asked"
    await asyncio.sleep(1.5)
    ex = (await orch.stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
    assert ex.state == pb.EXECUTION_STATE_CANCELLED
    assert models.servicer.calls["add_one"] == 0  # the next node never ran
    ds = await deliveries_settled(orch, eid)
    assert ds[0].event == pb.WEBHOOK_EVENT_CANCELLED and ds[0].state == pb.DELIVERY_STATE_DELIVERED
    again = await orch.stub.GetExecution(pb.GetExecutionRequest(execution=eid))
    assert again.execution.state == pb.EXECUTION_STATE_CANCELLED


async def test_watch_streams_nodes_then_finished(orch: Any, models: Any) -> None:
    await orch.stub.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("w", ["double", "add_one"]))
    )
    models.servicer.delay_s["double"] = 0.3
    created = await orch.stub.CreateExecution(create_req("w"))
    events: list[pb.WatchExecutionResponse] = []

    async def collect() -> None:
        req = pb.WatchExecutionRequest(execution=created.execution.execution)
        async for e in orch.stub.WatchExecution(req):
            events.append(e)

    try:
        await asyncio.wait_for(collect(), 5)
    except TimeoutError:
        ex = await orch.stub.GetExecution(pb.GetExecutionRequest(execution=created.execution.execution))
        raise AssertionError(f"watch did not end: {events} {ex}") from None
    types = [e.type for e in events]
    assert types[0] == pb.EXECUTION_EVENT_TYPE_SNAPSHOT and types[-1] == pb.EXECUTION_EVENT_TYPE_FINISHED
    nodes = [e.node.node for e in events if e.type == pb.EXECUTION_EVENT_TYPE_NODE_COMPLETED]
    assert nodes == ["n0", "n1"]
    assert events[-1].execution.state == pb.EXECUTION_STATE_SUCCEEDED


async def test_webhook_signed_retried_and_recorded(orch: Any, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    hook = pb.Webhook(url=receiver.url, secrets=[SECRET_OLD, SECRET_NEW])
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("wh", ["double"])))
    created = await orch.stub.CreateExecution(create_req("wh", webhook=hook))
    eid = created.execution.execution
    await wait_terminal(orch, eid)
    [d] = await deliveries_settled(orch, eid)
    assert d.state == pb.DELIVERY_STATE_DELIVERED and d.event == pb.WEBHOOK_EVENT_SUCCEEDED
    assert [a.http_status for a in d.attempts] == [500, 503, 204]
    assert len(receiver.received) == 3
    assert len({h["webhook-id"] for h, _, _ in receiver.received}) == 1  # same id on every attempt
    gaps = [b[2] - a[2] for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert all(g >= 0.02 for g in gaps)  # backoff (0.05 s base, jitter >= 50 %)
    headers, body, _ = receiver.received[-1]
    assert verify(SECRET_OLD, headers, body) and verify(SECRET_NEW, headers, body)  # rotation: both sign
    assert not verify("whsec_" + base64.b64encode(b"wrong").decode(), headers, body)
    assert not verify(SECRET_NEW, headers, body + b" ")
    payload = json.loads(body)
    assert payload["type"] == "execution.succeeded" and payload["data"]["execution"] == eid


async def test_webhook_410_stops_retries(orch: Any, receiver: Receiver) -> None:
    receiver.statuses = [410, 500, 500]
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("gone", ["double"])))
    created = await orch.stub.CreateExecution(
        create_req("gone", webhook=pb.Webhook(url=receiver.url, secrets=["s"]))
    )
    [d] = await deliveries_settled(orch, created.execution.execution)
    await asyncio.sleep(0.5)
    assert d.state == pb.DELIVERY_STATE_GONE and len(d.attempts) == 1 and len(receiver.received) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://[fd00::1]/hook",
        "http://100.64.0.1/hook",
        "http://metadata.google.internal/computeMetadata",
        "http://127.0.0.2:9/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
        # IPv6 forms that carry a private IPv4 address (6to4, NAT64, IPv4-compatible, mapped,
        # Teredo) and a metadata name with a trailing dot
        "http://[2002:a9fe:a9fe::1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[64:ff9b:1::a9fe:a9fe]/hook",
        "http://[::a9fe:a9fe]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",
        "http://metadata.google.internal./computeMetadata",
    ],
)
async def test_webhook_ssrf_destinations_refused(orch: Any, url: str) -> None:
    await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("ssrf", ["double"])))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await orch.stub.CreateExecution(create_req("ssrf", webhook=pb.Webhook(url=url, secrets=["s"])))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook" in exc.value.details()
