"""`python -m modelserve_orchestrator migrate` (the Kubernetes migration Job) applies the
orchestrator's migrations to a real PostgreSQL under the lock, is idempotent and exits 0; it exits
non-zero on a schema newer than it knows and on an unreachable database."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from modelserve_common.testing import free_port
from modelserve_orchestrator.migrations import SCHEMA

pytestmark = pytest.mark.integration

KNOWN = [m.number for m in SCHEMA.migrations]


def _migrate(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_DATABASE_URL": url, "ORCHESTRATOR_METRICS_PORT": "-1"}
    return subprocess.run(
        [sys.executable, "-m", "modelserve_orchestrator", "migrate", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            )
        }


def test_migrate_command_applies_once_and_is_idempotent(postgres_url: str) -> None:
    assert not _tables(postgres_url)
    first = _migrate(postgres_url)
    assert first.returncode == 0, first.stderr
    assert "orchestrator.migration_applied" in first.stderr
    assert "orchestrator.migrated" in first.stderr
    second = _migrate(postgres_url)
    assert second.returncode == 0, second.stderr
    assert "orchestrator.migration_applied" not in second.stderr
    assert "orchestrator.migrated" in second.stderr
    with psycopg.connect(postgres_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM orch_schema_migrations ORDER BY version")]
    assert versions == KNOWN
    assert {
        "orch_pipelines",
        "orch_executions",
        "orch_node_results",
        "orch_webhook_deliveries",
        "orch_webhook_attempts",
    } <= _tables(postgres_url)


def test_migrate_command_concurrent_jobs_apply_each_migration_once(postgres_url: str) -> None:
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: _migrate(postgres_url), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    applied = sum(r.stderr.count("orchestrator.migration_applied") for r in results)
    assert applied == len(KNOWN)  # each migration applied by exactly one job
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orch_schema_migrations").fetchone() == (len(KNOWN),)


def test_migrate_command_schema_newer_than_known_exits_nonzero(postgres_url: str) -> None:
    assert _migrate(postgres_url).returncode == 0
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "INSERT INTO orch_schema_migrations (version, description, applied_at) VALUES (999, 'future', 0)"
        )
    proc = _migrate(postgres_url)
    assert proc.returncode == 1
    assert "FAILED_PRECONDITION" in proc.stderr and "999" in proc.stderr


def test_migrate_command_unreachable_database_exits_nonzero() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    proc = _migrate(url, "--db-timeout-s", "1")
    assert proc.returncode == 1
    assert "orchestrator.migration_failed" in proc.stderr and "UNAVAILABLE" in proc.stderr


def test_migrate_command_bad_setting_fails_fast() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelserve_orchestrator", "migrate", "--workers", "many"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr
