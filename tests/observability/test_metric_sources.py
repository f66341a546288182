"""Where metrics come from, checked against real parts: the database metrics on a real PostgreSQL
(latency, constraint and outage errors, pool use), a Triton replica that does not answer
(ejected, counted), the orchestrator's sampled gauges on a real
PostgreSQL with rows in every state, and the gateway's authentication-failure reasons (every
refusal the authenticator can give has its own bounded reason)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from modelserve_common.db import ConstraintViolation, DatabaseUnavailable, PostgresDatabase
from modelserve_common.migrations import migrate
from modelserve_common.testing import free_port
from modelserve_gateway.metrics import AUTH_REASONS, auth_failure_reason
from modelserve_model_server.settings import ModelServerSettings
from modelserve_model_server.triton_pool import TritonPool
from modelserve_orchestrator.db import open_database
from modelserve_orchestrator.metrics import MetricsSampler
from modelserve_orchestrator.migrations import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_postgres_latency_errors_and_pool_use_are_recorded(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url, max_size=3, timeout_s=5)
    await db.open()
    try:
        ops = _value("modelserve_db_operation_seconds_count", dialect="postgresql")
        in_use = _value("modelserve_db_pool_in_use_connections")
        constraint = _value("modelserve_db_errors_total", dialect="postgresql", error="constraint")
        async with db.autocommit() as tx:
            await tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            await tx.execute("INSERT INTO t VALUES (1)")
        async with db.transaction() as tx:
            assert _value("modelserve_db_pool_in_use_connections") == in_use + 1
            await tx.fetch("SELECT k FROM t")
        assert _value("modelserve_db_pool_in_use_connections") == in_use
        assert _value("modelserve_db_pool_max_connections") == 3
        assert _value("modelserve_db_operation_seconds_count", dialect="postgresql") == ops + 2
        with pytest.raises(ConstraintViolation):
            async with db.autocommit() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
        assert (
            _value("modelserve_db_errors_total", dialect="postgresql", error="constraint") == constraint + 1
        )
        assert _value("modelserve_db_pool_in_use_connections") == in_use
    finally:
        await db.close()


async def test_an_unreachable_postgres_counts_as_unavailable() -> None:
    before = _value("modelserve_db_errors_total", dialect="postgresql", error="unavailable")
    db = PostgresDatabase(f"postgresql://postgres@127.0.0.1:{free_port()}/none", max_size=1, timeout_s=0.5)
    await db.open()
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.autocommit() as tx:
                await tx.fetchone("SELECT 1")
    finally:
        await db.close()
    assert _value("modelserve_db_errors_total", dialect="postgresql", error="unavailable") == before + 1


async def test_orchestrator_gauges_are_sampled_from_the_database(postgres_url: str, tmp_path: Path) -> None:
    db = open_database(postgres_url, tmp_path, min_size=1, max_size=2, timeout_s=5)
    await db.open()
    try:
        await migrate(db, SCHEMA)
        now = time.time()
        rows = [("q1", 1, now - 120), ("q2", 1, now - 10), ("r1", 2, now), ("s1", 3, now), ("s2", 3, now)]
        async with db.transaction() as tx:
            for eid, state, created in rows:
                await tx.execute(
                    "INSERT INTO orch_executions (id, pipeline, pipeline_version, state, inputs, parameters, "
                    "request_hash, create_time) VALUES (?, 'p', 1, ?, '{}', '{}', '', ?)",
                    (eid, state, created),
                )
            await tx.execute(
                "INSERT INTO orch_webhook_deliveries (webhook_id, execution_id, url, secrets, event, "
                "payload, state, next_attempt_at, create_time) "
                "VALUES ('w1', 's1', 'https://x', '[]', 1, '{}', 1, ?, ?)",
                (now - 30, now - 60),
            )
        await MetricsSampler(db, 60).sample()
    finally:
        await db.close()
    assert _value("modelserve_orchestrator_executions", state="QUEUED") == 2
    assert _value("modelserve_orchestrator_executions", state="RUNNING") == 1
    assert _value("modelserve_orchestrator_executions", state="SUCCEEDED") == 2
    assert _value("modelserve_orchestrator_executions", state="FAILED") == 0
    assert _value("modelserve_orchestrator_queue_depth") == 2
    assert 119 <= _value("modelserve_orchestrator_oldest_queued_age_seconds") < 120 + 60
    assert _value("modelserve_orchestrator_webhook_backlog") == 1
    assert 29 <= _value("modelserve_orchestrator_webhook_oldest_due_age_seconds") < 30 + 60


def test_every_authentication_refusal_has_its_own_reason() -> None:
    sources = [ROOT / "services/gateway/src/modelserve_gateway" / f for f in ("auth.py", "registry_cache.py")]
    messages = [
        m.group(1)
        for path in sources
        for m in re.finditer(r'Unauthenticated\(\s*f?"([^"{]+)', path.read_text())
    ]
    assert len(messages) >= 6, messages
    for message in messages:
        reason = auth_failure_reason(message)
        assert reason != "other", f"no reason for {message!r}: add its prefix to modelserve_gateway.metrics"
        assert reason in AUTH_REASONS
    assert auth_failure_reason("something new") == "other"


async def test_a_triton_replica_that_does_not_answer_is_ejected_and_counted(tmp_path: Path) -> None:
    settings = ModelServerSettings(
        triton_url=f"127.0.0.1:{free_port()}",  # nothing listens there
        triton_probe_timeout_s=0.5,
        model_repository=tmp_path,
        data_dir=tmp_path,
    )
    ejections = _value("modelserve_model_server_triton_replica_ejections_total")
    unavailable = _value("modelserve_model_server_triton_requests_total", code="UNAVAILABLE")
    pool = TritonPool(settings)
    await pool.start()
    try:
        assert _value("modelserve_model_server_triton_replica_ejections_total") == ejections + 1
        assert _value("modelserve_model_server_triton_replicas_available") == 0
        with pytest.raises(Exception, match="no Triton replica available"):
            await pool.call_within("/inference.GRPCInferenceService/ModelInfer", b"", 1.0)
    finally:
        await pool.close()
    # refused before any call left: nothing was forwarded, so no Triton outcome is counted
    assert _value("modelserve_model_server_triton_requests_total", code="UNAVAILABLE") == unavailable
