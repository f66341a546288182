"""The orchestrator's numbered schema migrations (PostgreSQL and SQLite), recorded in
``orch_schema_migrations`` (its own table: the registry may share the database);
modelserve_common.migrations.migrate applies them in one transaction under the orchestrator's advisory
lock, and a schema newer than this list raises SchemaTooNew. Never edit a released migration;
append a new one."""

from __future__ import annotations

import time

from modelserve_common.migrations import Migration, MigrationSet

MIGRATION_LOCK = 80080  # pg_advisory_xact_lock key of the orchestrator's migrations

_V1 = (
    """CREATE TABLE IF NOT EXISTS orch_pipelines (
        name TEXT NOT NULL, version BIGINT NOT NULL, spec TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, version))""",
    """CREATE TABLE IF NOT EXISTS orch_executions (
        id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, pipeline_version BIGINT NOT NULL,
        state INTEGER NOT NULL, inputs TEXT NOT NULL, parameters TEXT NOT NULL, webhook TEXT,
        idempotency_key TEXT UNIQUE, request_hash TEXT NOT NULL, outputs TEXT, missing TEXT,
        error TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,
        lease_until DOUBLE PRECISION, enqueued_at DOUBLE PRECISION,
        create_time DOUBLE PRECISION NOT NULL, start_time DOUBLE PRECISION, end_time DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS orch_executions_list ON orch_executions (create_time, id)",
    "CREATE INDEX IF NOT EXISTS orch_executions_state ON orch_executions (state)",
    """CREATE TABLE IF NOT EXISTS orch_node_results (
        execution_id TEXT NOT NULL, node TEXT NOT NULL, trace TEXT NOT NULL, outputs TEXT NOT NULL,
        completed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (execution_id, node))""",
    """CREATE TABLE IF NOT EXISTS orch_webhook_deliveries (
        webhook_id TEXT PRIMARY KEY, execution_id TEXT NOT NULL, url TEXT NOT NULL,
        secrets TEXT NOT NULL, event INTEGER NOT NULL, payload TEXT NOT NULL, state INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION, create_time DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS orch_deliveries_due ON orch_webhook_deliveries (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS orch_deliveries_exec ON orch_webhook_deliveries (execution_id)",
    """CREATE TABLE IF NOT EXISTS orch_webhook_attempts (
        webhook_id TEXT NOT NULL, attempt INTEGER NOT NULL, time DOUBLE PRECISION NOT NULL,
        http_status INTEGER NOT NULL, error TEXT NOT NULL, latency DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (webhook_id, attempt))""",
)

# Tenancy: pipelines and executions belong to the tenant that created them; rows from before
# this migration (and everything a trusted in-cluster caller creates) belong to 'default'.
_V2 = (
    "ALTER TABLE orch_pipelines ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'",
    "ALTER TABLE orch_executions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'",
    "CREATE INDEX IF NOT EXISTS orch_executions_tenant ON orch_executions (tenant, create_time, id)",
)

# Tracing (issue 18): the W3C trace context (JSON {"traceparent": ..., "tracestate": ...}, or '')
# of the request that created an execution, so the worker's spans link to it.
_V3 = ("ALTER TABLE orch_executions ADD COLUMN trace_context TEXT NOT NULL DEFAULT ''",)

SCHEMA = MigrationSet(
    service="orchestrator",
    migrations=(
        Migration(1, "pipelines, executions, node results, webhook deliveries and attempts", _V1),
        Migration(2, "tenant of pipelines and executions", _V2),
        Migration(3, "trace context of the request that created an execution (issue 18)", _V3),
    ),
    table="orch_schema_migrations",
    lock_key=MIGRATION_LOCK,
    name_column="description",
    applied_at_type="DOUBLE PRECISION",
    applied_at=time.time,
)
LATEST = SCHEMA.latest
