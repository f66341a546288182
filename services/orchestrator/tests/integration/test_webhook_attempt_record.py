"""A webhook attempt is recorded (counted, timed, error "sending") before its request leaves, so a
replica killed right after sending cannot leave an attempt the receiver saw unrecorded. The
receiver, a real HTTP server, reads the orchestrator's PostgreSQL when each request arrives; and
an attempt whose replica stopped is shown as such and still counts toward the most attempts."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from orchestrator_test_helpers import make_settings, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_orchestrator.server import running_server
from modelserve_orchestrator.store_deliveries import ATTEMPT_NO_OUTCOME, ATTEMPT_SENDING

pytestmark = pytest.mark.integration


class StoreReadingReceiver:
    """Answers 500 then 204; on each request, first reads what the database says of the delivery."""

    def __init__(self, database_url: str) -> None:
        self.seen: list[tuple[int, list[tuple[int, int, str]]]] = []  # (delivery attempts, attempt rows)
        self.statuses = [500]
        self.hold_first = False  # the first request waits (up to 10 s) for ``release``
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                wid = self.headers["webhook-id"]
                with psycopg.connect(database_url) as conn:
                    row = conn.execute(
                        "SELECT attempts FROM orch_webhook_deliveries WHERE webhook_id = %s", (wid,)
                    ).fetchone()
                    rows = conn.execute(
                        "SELECT attempt, http_status, error FROM orch_webhook_attempts "
                        "WHERE webhook_id = %s ORDER BY attempt",
                        (wid,),
                    ).fetchall()
                outer.seen.append((int(row[0]) if row else -1, [(int(a), int(s), e) for a, s, e in rows]))
                status = outer.statuses.pop(0) if outer.statuses else 204
                if outer.hold_first and not outer.first_arrived.is_set():
                    outer.first_arrived.set()
                    outer.release.wait(10)
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


async def _settled(
    stub: pb_grpc.OrchestratorServiceStub, eid: str, within: float = 15.0
) -> pb.WebhookDelivery:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ds = (await stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(execution=eid))).deliveries
        if len(ds) == 1 and ds[0].state != pb.DELIVERY_STATE_PENDING:
            return ds[0]
        await asyncio.sleep(0.05)
    raise AssertionError("delivery not settled")


async def test_attempt_is_recorded_before_the_request_reaches_the_receiver(
    postgres_url: str, tmp_path: Path, models: Any
) -> None:
    receiver = StoreReadingReceiver(postgres_url)
    try:
        settings = make_settings(tmp_path, models.target, database_url=postgres_url)
        async with running_server(settings) as running:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
                stub = pb_grpc.OrchestratorServiceStub(ch)
                await stub.CreatePipeline(
                    pb.CreatePipelineRequest(pipeline=sequence_pipeline("wr", ["double"]))
                )
                created = await stub.CreateExecution(
                    pb.CreateExecutionRequest(
                        pipeline="wr",
                        inputs=[tensor("x", [1.0])],
                        webhook=pb.Webhook(url=receiver.url, secrets=["s"]),
                    )
                )
                d = await _settled(stub, created.execution.execution)
    finally:
        receiver.close()
    # when each request arrived, its attempt was already recorded and counted
    assert receiver.seen == [
        (1, [(1, 0, ATTEMPT_SENDING)]),
        (2, [(1, 500, "HTTP 500"), (2, 0, ATTEMPT_SENDING)]),
    ]
    assert d.state == pb.DELIVERY_STATE_DELIVERED
    assert [(a.attempt, a.http_status, a.error) for a in d.attempts] == [(1, 500, "HTTP 500"), (2, 204, "")]


def test_replica_killed_after_sending_leaves_the_attempt_recorded(
    postgres_url: str, tmp_path: Path, models: Any
) -> None:
    """Replica A sends attempt 1 and is SIGKILLed before the answer; replica B sends attempt 2
    once A's claim on the delivery expires. The receiver saw the id twice, and the record shows
    both attempts: 1 without an outcome, 2 delivered."""
    receiver = StoreReadingReceiver(postgres_url)
    receiver.statuses = []
    receiver.hold_first = True
    env = {
        "ORCHESTRATOR_DATABASE_URL": postgres_url,
        "ORCHESTRATOR_MODEL_SERVER_URL": models.target,
        "ORCHESTRATOR_METRICS_PORT": "-1",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path),
        "ORCHESTRATOR_ACCESS_LOG": "false",
        "ORCHESTRATOR_WEBHOOK_ALLOW": '["127.0.0.1/32"]',
        "ORCHESTRATOR_WEBHOOK_TIMEOUT_S": "1",
        "ORCHESTRATOR_WEBHOOK_POLL_INTERVAL_S": "0.1",
    }

    def replica() -> ServiceProcess:
        port = free_port()
        return ServiceProcess("modelserve_orchestrator", {**env, "ORCHESTRATOR_GRPC_PORT": str(port)}, port)

    a, b = replica(), replica()
    try:
        a.start()
        with grpc.insecure_channel(a.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            stub.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("wk", ["double"])), timeout=5
            )
            eid = stub.CreateExecution(
                pb.CreateExecutionRequest(
                    pipeline="wk",
                    inputs=[tensor("x", [1.0])],
                    webhook=pb.Webhook(url=receiver.url, secrets=["s"]),
                ),
                timeout=5,
            ).execution.execution
        assert receiver.first_arrived.wait(15), a.output()
        a.signal(signal.SIGKILL)
        receiver.release.set()
        b.start()
        deadline = time.monotonic() + 20
        with grpc.insecure_channel(b.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            while time.monotonic() < deadline:
                [d] = stub.ListWebhookDeliveries(
                    pb.ListWebhookDeliveriesRequest(execution=eid), timeout=5
                ).deliveries
                if d.state != pb.DELIVERY_STATE_PENDING:
                    break
                time.sleep(0.1)
    finally:
        a.stop()
        b.stop()
        receiver.close()
    assert len(receiver.seen) == 2  # the receiver saw the id twice...
    assert receiver.seen[1] == (2, [(1, 0, ATTEMPT_NO_OUTCOME), (2, 0, ATTEMPT_SENDING)])
    assert d.state == pb.DELIVERY_STATE_DELIVERED  # ...and the record shows both attempts
    assert [(a.attempt, a.http_status, a.error) for a in d.attempts] == [
        (1, 0, ATTEMPT_NO_OUTCOME),
        (2, 204, ""),
    ]
