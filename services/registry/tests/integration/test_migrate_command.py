"""`python -m modelserve_registry migrate` (the Kubernetes migration Job) applies the migrations
to a real PostgreSQL once, is idempotent, and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = pytest.mark.integration


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "modelserve_registry", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_command_applies_once_and_is_idempotent(postgres_url: str) -> None:
    first = _migrate(postgres_url)
    assert first.returncode == 0, first.stderr
    assert "registry.migration_applied" in first.stderr
    second = _migrate(postgres_url)
    assert second.returncode == 0, second.stderr
    assert "registry.migration_applied" not in second.stderr
    assert "registry.migrated" in second.stderr
    with psycopg.connect(postgres_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            )
        }
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert {"models", "api_keys", "changes"} <= tables


def test_migrate_command_bad_setting_fails_fast() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelserve_registry", "migrate", "--pool-max-size", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid configuration" in proc.stderr
