"""Two orchestrator replicas (subprocesses) on real PostgreSQL + Redis sharing work.

- SIGTERM: the stopping replica hands back the leases of the executions it runs (their completed
  nodes recorded), so the other replica finishes them at once, long before the visibility timeout.
- SIGKILL: the other replica takes the executions over after the visibility timeout.
- An execution longer than the visibility timeout runs once on its replica.
In both, a node result already recorded is never computed again (the model server counts calls)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_test_helpers import array, make_settings, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_orchestrator.server import running_server

pytestmark = pytest.mark.integration

N = 4
SLOW_S = 60.0  # the third node's model call while the first replica runs it; then made fast


def _replica(env: dict[str, str]) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("modelserve_orchestrator", {**env, "ORCHESTRATOR_GRPC_PORT": str(port)}, port)


@pytest.fixture
def env(postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, models: Any) -> dict[str, str]:
    models.servicer.delay_s["neg"] = SLOW_S
    return {
        "ORCHESTRATOR_DATABASE_URL": postgres_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_REDIS_PREFIX": redis_prefix,
        "ORCHESTRATOR_MODEL_SERVER_URL": models.target,
        "ORCHESTRATOR_METRICS_PORT": "-1",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path),
        "ORCHESTRATOR_CLAIM_INTERVAL_S": "0.2",
        "ORCHESTRATOR_ACCESS_LOG": "false",
        "ORCHESTRATOR_SHUTDOWN_GRACE_S": "5",
    }


@pytest.fixture
def replicas(env: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    made: list[ServiceProcess] = []
    yield made
    for r in made:
        r.stop()


def _start_in_first(first: ServiceProcess, stub: pb_grpc.OrchestratorServiceStub) -> list[str]:
    """Creates N executions of double -> add_one -> neg(slow) while only ``first`` runs, and
    waits until each has its first two nodes recorded and is inside the slow third."""
    stub.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("rp", ["double", "add_one", "neg"])), timeout=5
    )
    ids = [
        stub.CreateExecution(
            pb.CreateExecutionRequest(pipeline="rp", inputs=[tensor("x", [float(i)])]), timeout=5
        ).execution.execution
        for i in range(N)
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        exs = [stub.GetExecution(pb.GetExecutionRequest(execution=e), timeout=5).execution for e in ids]
        if all(ex.state == pb.EXECUTION_STATE_RUNNING and len(ex.trace) == 2 for ex in exs):
            return ids
        time.sleep(0.05)
    raise AssertionError(
        f"executions did not reach their third node: {[(e.state, len(e.trace)) for e in exs]}"
    )


def _wait_succeeded(
    stub: pb_grpc.OrchestratorServiceStub, ids: list[str], within: float
) -> list[pb.Execution]:
    deadline = time.monotonic() + within
    exs: list[pb.Execution] = []
    while time.monotonic() < deadline:
        exs = [stub.GetExecution(pb.GetExecutionRequest(execution=e), timeout=5).execution for e in ids]
        if all(ex.state == pb.EXECUTION_STATE_SUCCEEDED for ex in exs):
            return exs
        time.sleep(0.05)
    raise AssertionError(
        f"not all SUCCEEDED within {within}s: {[pb.ExecutionState.Name(e.state) for e in exs]}"
    )


def test_sigterm_hands_leases_back_and_other_replica_finishes_at_once(
    env: dict[str, str], replicas: list[ServiceProcess], models: Any
) -> None:
    # a visibility timeout far longer than the test: only a hand-back lets B finish in time
    env = {**env, "ORCHESTRATOR_VISIBILITY_TIMEOUT_S": "60"}
    a, b = _replica(env), _replica(env)
    replicas += [a, b]
    a.start()
    with grpc.insecure_channel(a.target) as ch_a:
        ids = _start_in_first(a, pb_grpc.OrchestratorServiceStub(ch_a))
    b.start()
    t0 = time.monotonic()
    a.signal(signal.SIGTERM)
    assert a.proc is not None
    assert a.proc.wait(10) == 0
    models.servicer.delay_s["neg"] = 0.0
    assert a.output().count("execution.handed_back") == N, a.output()[-4000:]
    with grpc.insecure_channel(b.target) as ch_b:
        exs = _wait_succeeded(pb_grpc.OrchestratorServiceStub(ch_b), ids, within=15)
    took = time.monotonic() - t0
    assert took < 15
    for i, ex in enumerate(exs):
        assert ex.attempts == 2
        assert [t.node for t in ex.trace] == ["n0", "n1", "n2"]
        assert array(ex.outputs[0]).tolist() == [-(2.0 * i + 1)]
    # the first two nodes ran once per execution (recorded by A before it handed back); the slow
    # third ran on A (interrupted) and again on B
    assert models.servicer.calls["double"] == N
    assert models.servicer.calls["add_one"] == N
    assert models.servicer.calls["neg"] == 2 * N


def test_sigkill_other_replica_takes_over_without_recomputing_recorded_nodes(
    env: dict[str, str], replicas: list[ServiceProcess], models: Any
) -> None:
    env = {**env, "ORCHESTRATOR_VISIBILITY_TIMEOUT_S": "1.5"}
    a, b = _replica(env), _replica(env)
    replicas += [a, b]
    a.start()
    with grpc.insecure_channel(a.target) as ch_a:
        ids = _start_in_first(a, pb_grpc.OrchestratorServiceStub(ch_a))
    b.start()
    a.signal(signal.SIGKILL)
    models.servicer.delay_s["neg"] = 0.0
    with grpc.insecure_channel(b.target) as ch_b:
        exs = _wait_succeeded(pb_grpc.OrchestratorServiceStub(ch_b), ids, within=20)
    assert all(ex.attempts == 2 for ex in exs)
    assert [array(ex.outputs[0]).tolist() for ex in exs] == [[-(2.0 * i + 1)] for i in range(N)]
    assert models.servicer.calls["double"] == N
    assert models.servicer.calls["add_one"] == N
    assert models.servicer.calls["neg"] == 2 * N


async def test_execution_longer_than_visibility_timeout_runs_once(
    postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, models: Any
) -> None:
    """The replica's own queue entry goes idle past the visibility timeout while the execution
    runs (and is reclaimed by XAUTOCLAIM); the replica must not start it a second time."""
    models.servicer.delay_s["neg"] = 2.0
    settings = make_settings(
        tmp_path,
        models.target,
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        visibility_timeout_s=0.6,
        claim_interval_s=0.1,
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            await stub.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("long", ["double", "neg"]))
            )
            created = await stub.CreateExecution(
                pb.CreateExecutionRequest(pipeline="long", inputs=[tensor("x", [1.0])])
            )
            eid = created.execution.execution
            ex = created.execution
            for _ in range(100):
                ex = (await stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
                if ex.state == pb.EXECUTION_STATE_SUCCEEDED:
                    break
                await asyncio.sleep(0.05)
    assert ex.state == pb.EXECUTION_STATE_SUCCEEDED
    assert ex.attempts == 1
    assert models.servicer.calls["neg"] == 1
