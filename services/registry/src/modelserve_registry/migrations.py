"""The registry's numbered schema migrations, one set for PostgreSQL and SQLite, recorded in
``schema_migrations``; modelserve_common.migrations.migrate applies them (one transaction under the
registry's advisory lock; a schema newer than this list raises SchemaTooNew).

Portable types only: TEXT, BIGINT, INTEGER. Times are BIGINT microseconds since the epoch.
JSON documents are TEXT. Never edit a released migration; append a new one."""

from __future__ import annotations

import json

import structlog

from modelserve_common.db import Tx
from modelserve_common.migrations import Migration, MigrationSet

log = structlog.get_logger(__name__)

ADVISORY_LOCK_KEY = 0x6D737265  # "msre"


async def _admin_keys_to_tenant_admin(tx: Tx) -> None:
    """Tenant keys holding the platform-wide "admin" scope get "tenant-admin" instead (a tenant key
    is confined to its tenant; "admin" is platform-only). Each mapped key is logged."""
    rows = await tx.fetch("SELECT key, tenant, scopes FROM api_keys ORDER BY key")
    order = ("infer", "read", "write", "tenant-admin")
    for key, tenant, raw in rows:
        scopes = json.loads(raw)
        if "admin" not in scopes:
            continue
        mapped = {("tenant-admin" if s == "admin" else s) for s in scopes}
        new = sorted(mapped, key=lambda s: order.index(s) if s in order else len(order))
        await tx.execute(
            "UPDATE api_keys SET scopes = ? WHERE key = ?",
            (json.dumps(new, separators=(",", ":"), sort_keys=True), key),
        )
        log.warning("registry.migration_key_admin_scope_mapped", key=key, tenant=tenant, scopes=new)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE registry_state (
                id INTEGER PRIMARY KEY,
                revision BIGINT NOT NULL,
                compacted_revision BIGINT NOT NULL
            )""",
            "INSERT INTO registry_state (id, revision, compacted_revision) VALUES (1, 0, 0)",
            """CREATE TABLE tenants (
                name TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                rate_limit TEXT NOT NULL,
                max_models INTEGER NOT NULL,
                revision BIGINT NOT NULL,
                create_time BIGINT NOT NULL
            )""",
            """INSERT INTO tenants (name, display_name, rate_limit, max_models, revision, create_time)
               VALUES ('default', 'Default tenant', '{}', 0, 0, 0)""",
            """CREATE TABLE models (
                name TEXT PRIMARY KEY,
                tenant TEXT NOT NULL REFERENCES tenants (name),
                description TEXT NOT NULL,
                latest_version BIGINT NOT NULL,
                revision BIGINT NOT NULL,
                create_time BIGINT NOT NULL,
                update_time BIGINT NOT NULL
            )""",
            "CREATE INDEX models_tenant ON models (tenant, name)",
            """CREATE TABLE model_tags (
                model TEXT NOT NULL REFERENCES models (name) ON DELETE CASCADE,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (model, key)
            )""",
            """CREATE TABLE model_versions (
                model TEXT NOT NULL REFERENCES models (name) ON DELETE CASCADE,
                version BIGINT NOT NULL,
                description TEXT NOT NULL,
                tags TEXT NOT NULL,
                artifact_uri TEXT NOT NULL,
                artifact_sha256 TEXT NOT NULL,
                backend TEXT NOT NULL,
                spec TEXT NOT NULL,
                status TEXT NOT NULL,
                status_message TEXT NOT NULL,
                revision BIGINT NOT NULL,
                create_time BIGINT NOT NULL,
                update_time BIGINT NOT NULL,
                PRIMARY KEY (model, version)
            )""",
            """CREATE TABLE aliases (
                model TEXT NOT NULL,
                alias TEXT NOT NULL,
                version BIGINT NOT NULL,
                revision BIGINT NOT NULL,
                update_time BIGINT NOT NULL,
                PRIMARY KEY (model, alias),
                FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
            )""",
            """CREATE TABLE deployments (
                model TEXT PRIMARY KEY REFERENCES models (name) ON DELETE CASCADE,
                spec TEXT NOT NULL,
                revision BIGINT NOT NULL,
                update_time BIGINT NOT NULL
            )""",
            """CREATE TABLE api_keys (
                key TEXT PRIMARY KEY,
                tenant TEXT NOT NULL REFERENCES tenants (name),
                display_name TEXT NOT NULL,
                scopes TEXT NOT NULL,
                rate_limit TEXT NOT NULL,
                expire_time BIGINT,
                secret_hash TEXT NOT NULL,
                previous_hash TEXT,
                previous_expire_time BIGINT,
                create_time BIGINT NOT NULL,
                rotate_time BIGINT,
                revoke_time BIGINT,
                revision BIGINT NOT NULL
            )""",
            "CREATE INDEX api_keys_tenant ON api_keys (tenant, key)",
            """CREATE TABLE changes (
                revision BIGINT PRIMARY KEY,
                commit_time BIGINT NOT NULL,
                tenant TEXT NOT NULL,
                model TEXT NOT NULL,
                kind TEXT NOT NULL,
                change_type TEXT NOT NULL,
                payload TEXT NOT NULL
            )""",
            "CREATE INDEX changes_tenant ON changes (tenant, revision)",
        ),
    ),
    Migration(
        2,
        "shared models, tenant code permission, tenant keys lose the platform admin scope",
        (
            "ALTER TABLE models ADD COLUMN shared INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE tenants ADD COLUMN code_execution_allowed INTEGER NOT NULL DEFAULT 0",
        ),
        _admin_keys_to_tenant_admin,
    ),
    Migration(
        3,
        "uploaded artifacts: content-addressed blobs (issue 15)",
        (
            """CREATE TABLE blobs (
                sha256 TEXT PRIMARY KEY,
                size_bytes BIGINT NOT NULL,
                touch_time BIGINT NOT NULL
            )""",
            "CREATE INDEX blobs_touch_time ON blobs (touch_time)",
            "CREATE INDEX model_versions_artifact_uri ON model_versions (artifact_uri)",
        ),
    ),
    Migration(
        4,
        "per-tenant artifact storage quota (issue 15)",
        ("ALTER TABLE tenants ADD COLUMN storage_quota_bytes BIGINT NOT NULL DEFAULT 0",),
    ),
    Migration(
        5,
        "prediction logs and drift references (issue 18)",
        (
            """CREATE TABLE prediction_logs (
                id TEXT PRIMARY KEY,
                model TEXT NOT NULL REFERENCES models (name) ON DELETE CASCADE,
                version BIGINT NOT NULL,
                tenant TEXT NOT NULL,
                request_id TEXT NOT NULL,
                time_us BIGINT NOT NULL,
                error TEXT NOT NULL,
                inputs TEXT NOT NULL,
                outputs TEXT NOT NULL
            )""",
            "CREATE INDEX prediction_logs_model_time ON prediction_logs (model, time_us, id)",
            "CREATE INDEX prediction_logs_time ON prediction_logs (time_us)",
            """CREATE TABLE drift_references (
                model TEXT NOT NULL,
                version BIGINT NOT NULL,
                features TEXT NOT NULL,
                create_time BIGINT NOT NULL,
                PRIMARY KEY (model, version),
                FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
            )""",
        ),
    ),
    Migration(
        6,
        "the uploading tenant of each blob: its unreferenced, unswept uploads count toward its quota",
        ("ALTER TABLE blobs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        7,
        "the deployment each model had before its last change, for RollbackDeployment (issue 17)",
        ("ALTER TABLE deployments ADD COLUMN previous_spec TEXT",),
    ),
)

SCHEMA = MigrationSet(
    service="registry", migrations=MIGRATIONS, table="schema_migrations", lock_key=ADVISORY_LOCK_KEY
)
LATEST = SCHEMA.latest
