"""The kill campaign: two orchestrator replicas on real PostgreSQL + Redis; one is SIGKILLed at
random moments and restarted while 50 asynchronous executions with webhooks run. Every execution
must reach exactly one terminal state, none may be lost, and no webhook id may be delivered for two
different outcomes."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_test_helpers import sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.testing import ServiceProcess, free_port

pytestmark = pytest.mark.integration

N = 50
KILLS = 4
TERMINAL = {pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_FAILED, pb.EXECUTION_STATE_CANCELLED}


def _replica(env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("modelserve_orchestrator", {**env, "ORCHESTRATOR_GRPC_PORT": str(port)}, port)


def _call(fn: Any, req: Any, attempts: int = 20) -> Any:
    for i in range(attempts):
        try:
            return fn(req, timeout=5)
        except grpc.RpcError as exc:
            if (
                exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                or i == attempts - 1
            ):
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def test_kill_campaign_every_execution_terminal_once(
    postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, models: Any
) -> None:
    # the receiver is the one written from the Standard Webhooks spec in the component tests
    from importlib import util

    spec = util.spec_from_file_location(
        "kc_exec", Path(__file__).parents[1] / "component" / "test_executions.py"
    )
    assert spec and spec.loader
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    receiver = mod.Receiver()
    models.servicer.delay_s.update({"double": 0.05, "add_one": 0.05, "neg": 0.05})
    env = {
        "ORCHESTRATOR_DATABASE_URL": postgres_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_REDIS_PREFIX": redis_prefix,
        "ORCHESTRATOR_MODEL_SERVER_URL": models.target,
        "ORCHESTRATOR_METRICS_PORT": "-1",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path),
        "ORCHESTRATOR_VISIBILITY_TIMEOUT_S": "1.5",
        "ORCHESTRATOR_CLAIM_INTERVAL_S": "0.3",
        "ORCHESTRATOR_WORKERS": "8",
        "ORCHESTRATOR_WEBHOOK_ALLOW": '["127.0.0.1/32"]',
        "ORCHESTRATOR_WEBHOOK_INITIAL_BACKOFF_S": "0.1",
        "ORCHESTRATOR_WEBHOOK_MAX_BACKOFF_S": "0.5",
        "ORCHESTRATOR_WEBHOOK_POLL_INTERVAL_S": "0.1",
        "ORCHESTRATOR_ACCESS_LOG": "false",
        "ORCHESTRATOR_LOG_LEVEL": "WARNING",
    }
    victim, steady = _replica(env), _replica(env)
    rng = random.Random(8)
    start = time.monotonic()
    try:
        victim.start()
        steady.start()
        with grpc.insecure_channel(steady.target) as ch_s, grpc.insecure_channel(victim.target) as ch_v:
            s_stub, v_stub = pb_grpc.OrchestratorServiceStub(ch_s), pb_grpc.OrchestratorServiceStub(ch_v)
            s_stub.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("kc", ["double", "add_one", "neg"])),
                timeout=5,
            )
            ids: list[str] = []
            kills = 0
            for i in range(N):
                stub = v_stub if i % 2 else s_stub
                req = pb.CreateExecutionRequest(
                    pipeline="kc",
                    inputs=[tensor("x", [float(i)])],
                    idempotency_key=f"kc-{i}",
                    webhook=pb.Webhook(url=receiver.url, secrets=["kc-secret"]),
                )
                try:
                    resp = _call(stub.CreateExecution, req, attempts=1)
                except grpc.RpcError:  # the victim is down: retry on the steady replica, same key
                    resp = _call(s_stub.CreateExecution, req)
                ids.append(resp.execution.execution)
                if i % 12 == 11 and kills < KILLS:
                    time.sleep(rng.uniform(0.05, 0.4))
                    victim.signal(signal.SIGKILL)
                    assert victim.proc is not None
                    victim.proc.wait(5)
                    kills += 1
                    victim.start()
            assert len(set(ids)) == N
            # one more kill while the tail of the work runs
            time.sleep(rng.uniform(0.05, 0.3))
            victim.signal(signal.SIGKILL)
            assert victim.proc is not None
            victim.proc.wait(5)
            kills += 1
            victim.start()

            deadline = time.monotonic() + 40
            states: dict[str, pb.Execution] = {}
            while time.monotonic() < deadline and len(states) < N:
                for eid in ids:
                    if eid not in states:
                        ex = _call(s_stub.GetExecution, pb.GetExecutionRequest(execution=eid)).execution
                        if ex.state in TERMINAL:
                            states[eid] = ex
                time.sleep(0.2)
            lost = [e for e in ids if e not in states]
            assert not lost, f"{len(lost)} executions not terminal: {lost[:5]}"
            assert all(ex.state == pb.EXECUTION_STATE_SUCCEEDED for ex in states.values())
            resumed = sum(ex.attempts > 1 for ex in states.values())

            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                delivered = {json.loads(b)["data"]["execution"] for _, b, _ in receiver.received}
                if set(ids) <= delivered:
                    break
                time.sleep(0.2)
            outcomes: dict[str, set[str]] = {}
            for headers, body, _ in receiver.received:
                outcomes.setdefault(headers["webhook-id"], set()).add(json.loads(body)["type"])
            assert all(len(v) == 1 for v in outcomes.values())
            assert {json.loads(b)["data"]["execution"] for _, b, _ in receiver.received} == set(ids)
            assert len(outcomes) == N
            print(
                f"kill campaign: {N} executions, {kills} SIGKILLs, {resumed} resumed after a kill, "
                f"{len(receiver.received) - N} duplicate webhook deliveries, {time.monotonic() - start:.1f}s"
            )
    finally:
        victim.stop()
        steady.stop()
        receiver.close()
