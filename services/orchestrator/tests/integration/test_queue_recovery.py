"""Asynchronous work survives Redis trouble (real redis-server of the test's own, restarted empty;
real PostgreSQL; orchestrator replicas as subprocesses or in-process):

- a Redis restart under two running replicas: the consumer group is created again (NOGROUP), the
  executions whose queue entries were lost are re-queued by the reconcile, new ones run, and
  readiness is NOT_SERVING only while Redis is down;
- CreateExecution with Redis stopped succeeds once its row is committed, and the execution runs
  once Redis is back (one execution, no duplicate);
- pooled connections broken by a restart are replaced before use: every call after the restart
  succeeds at once (no stale-connection error)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orchestrator_test_helpers import array, make_settings, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_common.testing.databases import ThrowawayRedis
from modelserve_orchestrator.queue import RedisOptions, RedisWorkQueue
from modelserve_orchestrator.server import running_server

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _replica(env: dict[str, str], **over: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        "modelserve_orchestrator", {**env, **over, "ORCHESTRATOR_GRPC_PORT": str(port)}, port
    )


@pytest.fixture
def replicas() -> Iterator[list[ServiceProcess]]:
    made: list[ServiceProcess] = []
    yield made
    for r in made:
        r.stop()


def _log(p: ServiceProcess) -> str:
    """The replica's whole log (ServiceProcess.output() keeps only the tail)."""
    return p.log_path.read_text(errors="replace") if p.log_path is not None else ""


def _log_until(p: ServiceProcess, done: Callable[[str], bool], within: float = 20.0) -> str:
    """The replica's log once ``done`` holds for it (or as it is after ``within`` seconds)."""
    deadline = time.monotonic() + within
    text = _log(p)
    while not done(text) and time.monotonic() < deadline:
        time.sleep(0.1)
        text = _log(p)
    return text


def _restart(redis: ThrowawayRedis) -> None:
    """Like `redis-cli shutdown nosave` and a new empty redis-server on the same port."""
    redis.stop()
    redis.start()


def _states(stub: pb_grpc.OrchestratorServiceStub, ids: list[str]) -> list[pb.Execution]:
    return [stub.GetExecution(pb.GetExecutionRequest(execution=e), timeout=5).execution for e in ids]


def _wait_succeeded(
    stub: pb_grpc.OrchestratorServiceStub, ids: list[str], within: float
) -> list[pb.Execution]:
    deadline = time.monotonic() + within
    exs: list[pb.Execution] = []
    while time.monotonic() < deadline:
        exs = _states(stub, ids)
        if all(ex.state == pb.EXECUTION_STATE_SUCCEEDED for ex in exs):
            return exs
        time.sleep(0.1)
    raise AssertionError(
        f"not all SUCCEEDED within {within}s: {[pb.ExecutionState.Name(e.state) for e in exs]}"
    )


def _wait_health(target: str, want: int, within: float) -> None:
    deadline = time.monotonic() + within
    last = None
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            last = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if last == want:
                return
            time.sleep(0.05)
    raise AssertionError(f"{target}: health stayed {last}, wanted {want} within {within}s")


def test_redis_restart_under_two_replicas_loses_no_work(
    postgres_url: str,
    throwaway_redis: ThrowawayRedis,
    tmp_path: Path,
    models: Any,
    replicas: list[ServiceProcess],
) -> None:
    env = {
        "ORCHESTRATOR_DATABASE_URL": postgres_url,
        "ORCHESTRATOR_REDIS_URL": throwaway_redis.url,
        "ORCHESTRATOR_MODEL_SERVER_URL": models.target,
        "ORCHESTRATOR_METRICS_PORT": "-1",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path),
        "ORCHESTRATOR_ACCESS_LOG": "false",
        "ORCHESTRATOR_SHUTDOWN_GRACE_S": "2",
        "ORCHESTRATOR_CLAIM_INTERVAL_S": "0.2",
        "ORCHESTRATOR_RECONCILE_INTERVAL_S": "0.2",
        "ORCHESTRATOR_RECONCILE_GRACE_S": "0.5",
        "ORCHESTRATOR_DEPENDENCY_CHECK_INTERVAL_S": "0.2",
        "ORCHESTRATOR_DEPENDENCY_CHECK_TIMEOUT_S": "1",
    }
    # A takes API calls only; B runs one execution at a time, so that executions wait in the
    # queue (their entries in Redis) while B is busy with a slow one.
    a = _replica(env, ORCHESTRATOR_WORKERS="0")
    b = _replica(env, ORCHESTRATOR_WORKERS="1")
    replicas += [a, b]
    a.start()
    b.start()
    models.servicer.delay_s["neg"] = 2.5
    with grpc.insecure_channel(a.target) as ch_a, grpc.insecure_channel(b.target) as ch_b:
        sa, sb = pb_grpc.OrchestratorServiceStub(ch_a), pb_grpc.OrchestratorServiceStub(ch_b)
        sa.CreatePipeline(
            pb.CreatePipelineRequest(pipeline=sequence_pipeline("rr", ["double", "neg"])), timeout=5
        )
        before = [
            sa.CreateExecution(
                pb.CreateExecutionRequest(pipeline="rr", inputs=[tensor("x", [float(i)])]), timeout=5
            ).execution.execution
            for i in range(4)
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sum(ex.state == pb.EXECUTION_STATE_RUNNING for ex in _states(sa, before)) == 1:
                break
            time.sleep(0.05)
        running = [ex.state for ex in _states(sa, before)]
        # one runs (a loaded machine may already have finished the first), the others wait
        assert running.count(pb.EXECUTION_STATE_RUNNING) == 1
        assert running.count(pb.EXECUTION_STATE_QUEUED) >= 2

        throwaway_redis.stop()  # the three waiting entries are lost with it
        _wait_health(a.target, NOT_SERVING, within=5)
        throwaway_redis.start()
        models.servicer.delay_s["neg"] = 0.0
        _wait_health(a.target, SERVING, within=10)
        _wait_health(b.target, SERVING, within=10)
        after = [
            stub.CreateExecution(
                pb.CreateExecutionRequest(pipeline="rr", inputs=[tensor("x", [float(i)])]), timeout=5
            ).execution.execution
            for i, stub in zip(range(4, 8), [sa, sb, sa, sb], strict=True)
        ]
        exs = _wait_succeeded(sa, before + after, within=30)
    for i, ex in enumerate(exs):
        assert array(ex.outputs[0]).tolist() == [-2.0 * i]
    # each waiting execution ran once (re-queued once, not duplicated into several runs)
    assert [ex.attempts for ex in exs[1:]] == [1] * 7
    # the replicas write their log lines in batches (every 0.1 s, later on a starved machine):
    # wait for the lines rather than read a log that is still behind
    log_b = _log_until(b, lambda text: text.count("execution.requeued") >= 2)
    log_a = _log(a)
    assert log_b.count("execution.requeued") >= 2
    deadline = time.monotonic() + 20  # the group_created line after the restart may be A's, unflushed
    while (log_a + log_b).count("work_queue.group_created") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        log_a, log_b = _log(a), _log(b)
    # the missing group was noticed and created again, not retried twice a second forever
    # (once at the first start, once after the restart)
    assert (log_a + log_b).count("work_queue.group_created") >= 2
    assert log_b.count("work_queue.group_missing") <= 3, log_b[-4000:]


async def test_create_execution_with_redis_stopped_succeeds_and_runs_when_redis_is_back(
    postgres_url: str, throwaway_redis: ThrowawayRedis, tmp_path: Path, models: Any
) -> None:
    settings = make_settings(
        tmp_path,
        models.target,
        database_url=postgres_url,
        redis_url=throwaway_redis.url,
        reconcile_interval_s=0.2,
        reconcile_grace_s=0.5,
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            await stub.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("down", ["double"]))
            )
            throwaway_redis.stop()
            created = await stub.CreateExecution(
                pb.CreateExecutionRequest(pipeline="down", inputs=[tensor("x", [3.0])]), timeout=10
            )
            eid = created.execution.execution
            assert created.execution.state == pb.EXECUTION_STATE_QUEUED and not created.replayed
            await asyncio.sleep(1.0)  # Redis still down: stays QUEUED, recorded
            got = (await stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
            assert got.state == pb.EXECUTION_STATE_QUEUED
            throwaway_redis.start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and got.state != pb.EXECUTION_STATE_SUCCEEDED:
                await asyncio.sleep(0.1)
                got = (await stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
            assert got.state == pb.EXECUTION_STATE_SUCCEEDED, pb.ExecutionState.Name(got.state)
            assert array(got.outputs[0]).tolist() == [6.0] and got.attempts == 1
            listed = await stub.ListExecutions(pb.ListExecutionsRequest(pipeline="down"))
            assert [e.execution for e in listed.executions] == [eid]


async def test_pooled_connections_replaced_after_redis_restart(throwaway_redis: ThrowawayRedis) -> None:
    q = RedisWorkQueue(throwaway_redis.url, "stale:", "c1", options=RedisOptions(health_check_interval_s=60))
    try:
        await q.ping()
        # eight connections in the pool (eight blocking reads at once), then idle
        await asyncio.gather(*(q.receive(1, 0.2) for _ in range(8)))
        _restart(throwaway_redis)
        # every kind of call, eight at once (each on a connection the restart broke)
        results = await asyncio.gather(
            *(q.enqueue(f"e{i}") for i in range(4)),
            q.ping(),
            q.missing(["nope"]),
            q.publish("e0", {"type": 1}),
            q.receive(4, 0.2),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert results[5] == ["nope"]
    finally:
        await q.close()


async def test_executions_created_right_after_redis_restart_run_at_once(
    postgres_url: str, throwaway_redis: ThrowawayRedis, tmp_path: Path, models: Any
) -> None:
    """The reconcile waits a minute here, so the executions run only if their enqueue right
    after the restart succeeded."""
    settings = make_settings(
        tmp_path,
        models.target,
        database_url=postgres_url,
        redis_url=throwaway_redis.url,
        reconcile_grace_s=60.0,
        workers=4,
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            await stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("now", ["double"])))

            async def create(i: int) -> str:
                resp = await stub.CreateExecution(
                    pb.CreateExecutionRequest(pipeline="now", inputs=[tensor("x", [float(i)])]), timeout=5
                )
                return str(resp.execution.execution)

            warm = await asyncio.gather(*(create(i) for i in range(6)))
            _restart(throwaway_redis)
            ids = await asyncio.gather(*(create(i) for i in range(6)))
            deadline = time.monotonic() + 10
            states: list[int] = []
            while time.monotonic() < deadline:
                exs = [(await stub.GetExecution(pb.GetExecutionRequest(execution=e))).execution for e in ids]
                states = [ex.state for ex in exs]
                if all(s == pb.EXECUTION_STATE_SUCCEEDED for s in states):
                    break
                await asyncio.sleep(0.1)
            assert all(s == pb.EXECUTION_STATE_SUCCEEDED for s in states), states
            assert len(set(warm) | set(ids)) == 12
