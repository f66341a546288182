"""All SQL of the registry. ``RegistryStore.transaction(write=...)`` yields a ``StoreTx`` with typed
reads and writes of domain objects; the service holds the rules.

Write transactions are serialized on the one row of ``registry_state`` (PostgreSQL: SELECT … FOR
UPDATE first thing; SQLite: BEGIN IMMEDIATE). Each change takes the next revision from that row and
appends itself to ``changes`` in the same transaction, so revisions are gap-free, commit in revision
order (a Watch reader that sees revision N has seen every revision below it) and a rolled-back
transaction leaves neither rows nor revisions behind. Version numbers come from the model's
``latest_version`` counter under the same lock: unique and gap-free under concurrent creators."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import Counter

from modelserve_registry.db import Database, DatabaseUnavailable, Row, Tx
from modelserve_registry.domain import (
    KINDS,
    Alias,
    ApiKey,
    Batching,
    Change,
    ChangeType,
    Deployment,
    KeySecrets,
    Model,
    ModelVersion,
    PredictionLogging,
    RateLimit,
    Resource,
    Target,
    Tenant,
    TensorSpec,
    from_plain,
    kind_of,
    to_plain,
)
from modelserve_registry.metrics import WRITES

log = structlog.get_logger(__name__)

COMPACT_EVERY = 1000
MAX_TIME_US = 253_402_300_799_999_999
"""9999-12-31T23:59:59.999999Z, the latest instant a protobuf Timestamp can carry: no time field
beyond it (or before the epoch) is ever committed, so everything stored can be sent back."""

WATCH_SKIPPED = Counter(
    "modelserve_registry_watch_skipped_changes_total",
    "Changes that Watch skipped because they could not be decoded or encoded (logged each time).",
    ["stage"],
)


class UnencodableResource(ValueError):
    """A resource with a time field outside the Timestamp range (a bug upstream: the service
    validates every time at the edge); raised before anything is written."""


def check_encodable(resource: Any) -> None:
    """Raises UnencodableResource when a time field (``*_time``) lies outside 0..MAX_TIME_US."""
    for f in dataclasses.fields(resource):
        if not f.name.endswith("_time"):
            continue
        value = getattr(resource, f.name)
        if value is not None and not 0 <= value <= MAX_TIME_US:
            raise UnencodableResource(
                f"{kind_of(resource)}.{f.name} = {value} is outside the Timestamp range"
            )


FilterTerm = tuple[str, str, str]  # (field, op, value): op is "=", "!=" or ":"
ORDER_COLUMNS = {"name": "m.name", "create_time": "m.create_time", "update_time": "m.update_time"}


def now_us() -> int:
    return int(time.time() * 1_000_000)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class StoreTx:
    """Typed statements inside one transaction."""

    def __init__(self, tx: Tx, dialect: str, retention: int) -> None:
        self._tx = tx
        self._dialect = dialect
        self._retention = retention

    # -- revisions and changes -------------------------------------------------------------
    async def lock_for_write(self) -> None:
        """Serializes writers (SQLite already holds its write lock from BEGIN IMMEDIATE)."""
        if self._dialect == "postgresql":
            await self._tx.execute("SELECT revision FROM registry_state WHERE id = 1 FOR UPDATE")

    async def record(self, change_type: ChangeType, tenant: str, model: str, resource: Resource) -> int:
        """Gives ``resource`` the next revision and appends the change; returns the revision.
        A resource that could not be sent back (UnencodableResource) is refused before any write."""
        check_encodable(resource)
        row = await self._tx.fetchone(
            "UPDATE registry_state SET revision = revision + 1 WHERE id = 1 RETURNING revision"
        )
        assert row is not None
        revision = int(row[0])
        resource.revision = revision
        await self._tx.execute(
            "INSERT INTO changes (revision, commit_time, tenant, model, kind, change_type, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (revision, now_us(), tenant, model, kind_of(resource), change_type, _dumps(to_plain(resource))),
        )
        WRITES.labels(kind_of(resource), change_type).inc()
        if revision % COMPACT_EVERY == 0 and revision > self._retention:
            horizon = revision - self._retention
            await self._tx.execute("DELETE FROM changes WHERE revision <= ?", (horizon,))
            await self._tx.execute(
                "UPDATE registry_state SET compacted_revision = ? WHERE id = 1", (horizon,)
            )
        return revision

    async def revisions(self) -> tuple[int, int]:
        """(current revision, compacted revision: changes at or below it are gone)."""
        row = await self._tx.fetchone("SELECT revision, compacted_revision FROM registry_state WHERE id = 1")
        assert row is not None
        return int(row[0]), int(row[1])

    async def changes_after(
        self, after: int, *, tenant: str | None, model: str | None, limit: int
    ) -> tuple[list[Change], int]:
        """Changes above ``after`` visible to the filter, in revision order, and the highest
        revision scanned (so a filtered reader still advances)."""
        rows = await self._tx.fetch(
            "SELECT revision, commit_time, tenant, model, kind, change_type, payload FROM changes "
            "WHERE revision > ? ORDER BY revision LIMIT ?",
            (after, limit),
        )
        out: list[Change] = []
        for rev, ctime, ten, mod, kind, ctype, payload in rows:
            if tenant is not None and ten != tenant:
                continue
            if model and mod != model:
                continue
            try:
                resource = from_plain(KINDS[kind], json.loads(payload))
                check_encodable(resource)
            except Exception as exc:  # one bad entry must not stop every Watch at this revision
                WATCH_SKIPPED.labels(stage="decode").inc()
                log.error(
                    "registry.watch_change_skipped", revision=int(rev), kind=kind, error=repr(exc)[:300]
                )
                continue
            out.append(Change(int(rev), ctype, int(ctime), ten, resource))
        scanned = int(rows[-1][0]) if rows else after
        return out, scanned

    # -- tenants ---------------------------------------------------------------------------
    _TENANT_COLS = (
        "name, display_name, rate_limit, max_models, revision, create_time, code_execution_allowed, "
        "storage_quota_bytes"
    )

    async def get_tenant(self, name: str) -> Tenant | None:
        row = await self._tx.fetchone(
            f"SELECT {self._TENANT_COLS} FROM tenants WHERE name = ?",
            (name,),
        )
        return _tenant(row) if row else None

    async def insert_tenant(self, t: Tenant) -> None:
        await self._tx.execute(
            f"INSERT INTO tenants ({self._TENANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.name,
                t.display_name,
                _dumps(to_plain(t.rate_limit)),
                t.max_models,
                t.revision,
                t.create_time,
                int(t.code_execution_allowed),
                t.storage_quota_bytes,
            ),
        )

    async def update_tenant(self, t: Tenant) -> None:
        await self._tx.execute(
            "UPDATE tenants SET display_name = ?, rate_limit = ?, max_models = ?, "
            "code_execution_allowed = ?, storage_quota_bytes = ?, revision = ? WHERE name = ?",
            (
                t.display_name,
                _dumps(to_plain(t.rate_limit)),
                t.max_models,
                int(t.code_execution_allowed),
                t.storage_quota_bytes,
                t.revision,
                t.name,
            ),
        )

    async def list_tenants(self, offset: int, limit: int) -> list[Tenant]:
        rows = await self._tx.fetch(
            f"SELECT {self._TENANT_COLS} FROM tenants ORDER BY name LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_tenant(r) for r in rows]

    # -- models ----------------------------------------------------------------------------
    _MODEL_COLS = (
        "m.name, m.tenant, m.description, m.latest_version, m.revision, m.create_time, m.update_time, "
        "m.shared"
    )

    async def get_model(self, name: str) -> Model | None:
        row = await self._tx.fetchone(f"SELECT {self._MODEL_COLS} FROM models m WHERE m.name = ?", (name,))
        if row is None:
            return None
        model = _model(row)
        model.tags = await self._tags(name)
        return model

    async def _tags(self, name: str) -> dict[str, str]:
        rows = await self._tx.fetch("SELECT key, value FROM model_tags WHERE model = ? ORDER BY key", (name,))
        return {k: v for k, v in rows}

    async def _write_tags(self, name: str, tags: dict[str, str]) -> None:
        await self._tx.execute("DELETE FROM model_tags WHERE model = ?", (name,))
        for k, v in sorted(tags.items()):
            await self._tx.execute(
                "INSERT INTO model_tags (model, key, value) VALUES (?, ?, ?)", (name, k, v)
            )

    async def count_models(self, tenant: str) -> int:
        row = await self._tx.fetchone("SELECT COUNT(*) FROM models WHERE tenant = ?", (tenant,))
        return int(row[0]) if row else 0

    async def insert_model(self, m: Model) -> None:
        await self._tx.execute(
            "INSERT INTO models (name, tenant, description, latest_version, revision, create_time, "
            "update_time, shared) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.name,
                m.tenant,
                m.description,
                m.latest_version,
                m.revision,
                m.create_time,
                m.update_time,
                int(m.shared),
            ),
        )
        await self._write_tags(m.name, m.tags)

    async def update_model(self, m: Model) -> None:
        await self._tx.execute(
            "UPDATE models SET description = ?, revision = ?, update_time = ?, shared = ? WHERE name = ?",
            (m.description, m.revision, m.update_time, int(m.shared), m.name),
        )
        await self._write_tags(m.name, m.tags)

    async def delete_model(self, name: str) -> None:
        await self._tx.execute("DELETE FROM models WHERE name = ?", (name,))

    async def next_version_number(self, name: str) -> int:
        row = await self._tx.fetchone(
            "UPDATE models SET latest_version = latest_version + 1 WHERE name = ? RETURNING latest_version",
            (name,),
        )
        assert row is not None
        return int(row[0])

    async def list_models(
        self,
        *,
        tenant: str | None,
        terms: Sequence[FilterTerm],
        order: list[tuple[str, bool]],
        offset: int,
        limit: int,
    ) -> list[Model]:
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("(m.tenant = ? OR m.shared = 1)")
            params.append(tenant)
        contains = "instr({}, ?) > 0" if self._dialect == "sqlite" else "strpos({}, ?) > 0"
        for field, op, value in terms:
            if field.startswith("tags."):
                key = field[5:]
                if op == ":":
                    cond = "EXISTS (SELECT 1 FROM model_tags t WHERE t.model = m.name AND t.key = ? AND "
                    cond += contains.format("t.value") + ")"
                    where.append(cond)
                else:
                    neg = "NOT " if op == "!=" else ""
                    where.append(
                        f"{neg}EXISTS (SELECT 1 FROM model_tags t WHERE t.model = m.name AND t.key = ? "
                        "AND t.value = ?)"
                    )
                params.extend([key, value])
                continue
            col = f"m.{field}"
            if op == ":":
                where.append(contains.format(col))
            else:
                where.append(f"{col} {'=' if op == '=' else '<>'} ?")
            params.append(value)
        order_sql = ", ".join(f"{ORDER_COLUMNS[f]} {'DESC' if desc else 'ASC'}" for f, desc in order)
        if "m.name" not in order_sql:
            order_sql += ", m.name ASC"
        sql = f"SELECT {self._MODEL_COLS} FROM models m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order_sql} LIMIT ? OFFSET ?"
        rows = await self._tx.fetch(sql, (*params, limit, offset))
        models = [_model(r) for r in rows]
        for m in models:
            m.tags = await self._tags(m.name)
        return models

    # -- versions --------------------------------------------------------------------------
    _VERSION_COLS = (
        "model, version, description, tags, artifact_uri, artifact_sha256, backend, spec, status, "
        "status_message, revision, create_time, update_time"
    )

    async def get_version(self, model: str, version: int) -> ModelVersion | None:
        row = await self._tx.fetchone(
            f"SELECT {self._VERSION_COLS} FROM model_versions WHERE model = ? AND version = ?",
            (model, version),
        )
        if row is None:
            return None
        v = _version(row)
        v.aliases = await self.aliases_of(model, version)
        return v

    async def insert_version(self, v: ModelVersion) -> None:
        await self._tx.execute(
            f"INSERT INTO model_versions ({self._VERSION_COLS}) VALUES ({', '.join('?' * 13)})",
            (
                v.model,
                v.version,
                v.description,
                _dumps(v.tags),
                v.artifact_uri,
                v.artifact_sha256,
                v.backend,
                _dumps(_version_spec(v)),
                v.status,
                v.status_message,
                v.revision,
                v.create_time,
                v.update_time,
            ),
        )

    async def update_version(self, v: ModelVersion) -> None:
        await self._tx.execute(
            "UPDATE model_versions SET description = ?, tags = ?, status = ?, status_message = ?, "
            "revision = ?, update_time = ? WHERE model = ? AND version = ?",
            (
                v.description,
                _dumps(v.tags),
                v.status,
                v.status_message,
                v.revision,
                v.update_time,
                v.model,
                v.version,
            ),
        )

    # -- blobs (uploaded artifacts; see artifacts.py) ----------------------------------------
    async def touch_blob(self, sha256: str, size: int, now: int) -> None:
        """Records a stored blob, or marks a known one as just used (the sweeper spares it)."""
        await self._tx.execute(
            "INSERT INTO blobs (sha256, size_bytes, touch_time) VALUES (?, ?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET touch_time = excluded.touch_time",
            (sha256, size, now),
        )

    async def tenant_storage_used(self, tenant: str) -> int:
        """Bytes of the distinct blobs the tenant's versions reference."""
        row = await self._tx.fetchone(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM blobs WHERE sha256 IN ("
            "SELECT substr(v.artifact_uri, 13) FROM model_versions v JOIN models m ON m.name = v.model "
            "WHERE m.tenant = ? AND v.artifact_uri LIKE ?)",
            (tenant, "blob:sha256:%"),
        )
        return int(row[0]) if row else 0

    async def tenant_references_blob(self, tenant: str, sha256: str) -> bool:
        row = await self._tx.fetchone(
            "SELECT 1 FROM model_versions v JOIN models m ON m.name = v.model "
            "WHERE m.tenant = ? AND v.artifact_uri = ? LIMIT 1",
            (tenant, "blob:sha256:" + sha256),
        )
        return row is not None

    async def unreferenced_blobs(self, touched_before: int, limit: int) -> list[str]:
        rows = await self._tx.fetch(
            "SELECT b.sha256 FROM blobs b WHERE b.touch_time < ? AND NOT EXISTS ("
            "SELECT 1 FROM model_versions v WHERE v.artifact_uri = 'blob:sha256:' || b.sha256) "
            "ORDER BY b.touch_time LIMIT ?",
            (touched_before, limit),
        )
        return [str(r[0]) for r in rows]

    async def delete_blob(self, sha256: str) -> None:
        await self._tx.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,))

    async def delete_version(self, model: str, version: int) -> None:
        await self._tx.execute("DELETE FROM model_versions WHERE model = ? AND version = ?", (model, version))

    async def list_versions(self, model: str, offset: int, limit: int) -> list[ModelVersion]:
        rows = await self._tx.fetch(
            f"SELECT {self._VERSION_COLS} FROM model_versions WHERE model = ? ORDER BY version DESC "
            "LIMIT ? OFFSET ?",
            (model, limit, offset),
        )
        versions = [_version(r) for r in rows]
        aliases = await self.list_aliases(model)
        for v in versions:
            v.aliases = [a.alias for a in aliases if a.version == v.version]
        return versions

    async def count_versions(self, model: str) -> int:
        row = await self._tx.fetchone("SELECT COUNT(*) FROM model_versions WHERE model = ?", (model,))
        return int(row[0]) if row else 0

    # -- aliases ---------------------------------------------------------------------------
    async def get_alias(self, model: str, alias: str) -> Alias | None:
        row = await self._tx.fetchone(
            "SELECT model, alias, version, revision, update_time FROM aliases WHERE model = ? AND alias = ?",
            (model, alias),
        )
        return Alias(*row) if row else None

    async def list_aliases(self, model: str) -> list[Alias]:
        rows = await self._tx.fetch(
            "SELECT model, alias, version, revision, update_time FROM aliases WHERE model = ? ORDER BY alias",
            (model,),
        )
        return [Alias(*r) for r in rows]

    async def aliases_of(self, model: str, version: int) -> list[str]:
        rows = await self._tx.fetch(
            "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias", (model, version)
        )
        return [r[0] for r in rows]

    async def upsert_alias(self, a: Alias) -> None:
        await self._tx.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (a.model, a.alias))
        await self._tx.execute(
            "INSERT INTO aliases (model, alias, version, revision, update_time) VALUES (?, ?, ?, ?, ?)",
            (a.model, a.alias, a.version, a.revision, a.update_time),
        )

    async def delete_alias(self, model: str, alias: str) -> None:
        await self._tx.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (model, alias))

    # -- deployments -----------------------------------------------------------------------
    async def get_deployment(self, model: str) -> Deployment | None:
        row = await self._tx.fetchone(
            "SELECT d.model, m.tenant, d.spec, d.revision, d.update_time, m.shared FROM deployments d "
            "JOIN models m ON m.name = d.model WHERE d.model = ?",
            (model,),
        )
        return _deployment(row) if row else None

    async def upsert_deployment(self, d: Deployment) -> None:
        spec = _dumps(
            {
                "targets": [to_plain(t) for t in d.targets],
                "batching_overrides": to_plain(d.batching_overrides),
                "rate_limit": to_plain(d.rate_limit),
                "prediction_logging": to_plain(d.prediction_logging),
            }
        )
        await self._tx.execute("DELETE FROM deployments WHERE model = ?", (d.model,))
        await self._tx.execute(
            "INSERT INTO deployments (model, spec, revision, update_time) VALUES (?, ?, ?, ?)",
            (d.model, spec, d.revision, d.update_time),
        )

    async def list_deployments(self, tenant: str | None) -> list[Deployment]:
        sql = (
            "SELECT d.model, m.tenant, d.spec, d.revision, d.update_time, m.shared FROM deployments d "
            "JOIN models m ON m.name = d.model"
        )
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " WHERE m.tenant = ?"
            params = (tenant,)
        rows = await self._tx.fetch(sql + " ORDER BY d.model", params)
        return [_deployment(r) for r in rows]

    # -- API keys --------------------------------------------------------------------------
    _KEY_COLS = (
        "key, tenant, display_name, scopes, rate_limit, expire_time, create_time, rotate_time, "
        "previous_expire_time, revoke_time, revision, secret_hash, previous_hash"
    )

    async def get_key(self, key: str) -> tuple[ApiKey, KeySecrets] | None:
        row = await self._tx.fetchone(f"SELECT {self._KEY_COLS} FROM api_keys WHERE key = ?", (key,))
        return _key(row) if row else None

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        rows = await self._tx.fetch(
            f"SELECT {self._KEY_COLS} FROM api_keys WHERE tenant = ? AND revoke_time IS NULL ORDER BY key",
            (tenant,),
        )
        return [_key(r)[0] for r in rows]

    async def insert_key(self, k: ApiKey, s: KeySecrets) -> None:
        await self._tx.execute(
            f"INSERT INTO api_keys ({self._KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                k.key,
                k.tenant,
                k.display_name,
                _dumps(k.scopes),
                _dumps(to_plain(k.rate_limit)),
                k.expire_time,
                k.create_time,
                k.rotate_time,
                s.previous_expire_time,
                k.revoke_time,
                k.revision,
                s.secret_hash,
                s.previous_hash,
            ),
        )

    async def update_key(self, k: ApiKey, s: KeySecrets) -> None:
        await self._tx.execute(
            "UPDATE api_keys SET rotate_time = ?, previous_expire_time = ?, revoke_time = ?, revision = ?, "
            "secret_hash = ?, previous_hash = ? WHERE key = ?",
            (
                k.rotate_time,
                s.previous_expire_time,
                k.revoke_time,
                k.revision,
                s.secret_hash,
                s.previous_hash,
                k.key,
            ),
        )


class RegistryStore:
    """Opens transactions on the registry's database."""

    def __init__(
        self,
        db: Database,
        *,
        change_retention: int = 1_000_000,
        on_outage: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self._retention = change_retention
        self._on_outage = on_outage

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[StoreTx]:
        """A transaction; a DatabaseUnavailable (outage) first calls ``on_outage`` (readiness
        off at once), then propagates (UNAVAILABLE)."""
        try:
            async with self.db.transaction(write=write) as tx:
                stx = StoreTx(tx, self.db.dialect, self._retention)
                if write:
                    await stx.lock_for_write()
                yield stx
        except DatabaseUnavailable:
            if self._on_outage is not None:
                await self._on_outage()
            raise

    async def ping(self) -> None:
        async with self.db.transaction(write=False) as tx:
            await tx.fetchone("SELECT 1")


def _model(row: Row) -> Model:
    name, tenant, description, latest, revision, ctime, utime, shared = row
    return Model(
        name=name,
        tenant=tenant,
        description=description,
        latest_version=int(latest),
        revision=int(revision),
        create_time=int(ctime),
        update_time=int(utime),
        shared=bool(shared),
    )


def _version_spec(v: ModelVersion) -> dict[str, Any]:
    return {
        "inputs": [to_plain(t) for t in v.inputs],
        "outputs": [to_plain(t) for t in v.outputs],
        "batching": to_plain(v.batching),
        "metadata": v.metadata,
        "source_run": v.source_run,
        "source_uri": v.source_uri,
        "artifact_size_bytes": v.artifact_size_bytes,
        "artifact_format": v.artifact_format,
    }


def _version(row: Row) -> ModelVersion:
    (model, version, description, tags, uri, sha, backend, spec, status, message, revision, ctime, utime) = (
        row
    )
    s = json.loads(spec)
    return ModelVersion(
        model=model,
        version=int(version),
        description=description,
        tags=json.loads(tags),
        artifact_uri=uri,
        artifact_sha256=sha,
        backend=backend,
        inputs=[from_plain(TensorSpec, t) for t in s["inputs"]],
        outputs=[from_plain(TensorSpec, t) for t in s["outputs"]],
        batching=from_plain(Batching, s["batching"]),
        metadata=s["metadata"],
        source_run=s["source_run"],
        source_uri=s["source_uri"],
        artifact_size_bytes=int(s.get("artifact_size_bytes", 0)),
        artifact_format=s.get("artifact_format", ""),
        status=status,
        status_message=message,
        revision=int(revision),
        create_time=int(ctime),
        update_time=int(utime),
    )


def _deployment(row: Row) -> Deployment:
    model, tenant, spec, revision, utime, shared = row
    s = json.loads(spec)
    return Deployment(
        model=model,
        tenant=tenant,
        targets=[from_plain(Target, t) for t in s["targets"]],
        batching_overrides=from_plain(Batching, s["batching_overrides"]),
        rate_limit=from_plain(RateLimit, s["rate_limit"]),
        revision=int(revision),
        update_time=int(utime),
        shared=bool(shared),
        prediction_logging=from_plain(PredictionLogging, s.get("prediction_logging", {})),
    )


def _tenant(row: Row) -> Tenant:
    name, display, rate, max_models, revision, ctime, code, quota = row
    return Tenant(
        storage_quota_bytes=int(quota),
        name=name,
        display_name=display,
        rate_limit=from_plain(RateLimit, json.loads(rate)),
        max_models=int(max_models),
        revision=int(revision),
        create_time=int(ctime),
        code_execution_allowed=bool(code),
    )


def _opt(v: Any) -> int | None:
    return None if v is None else int(v)


def _key(row: Row) -> tuple[ApiKey, KeySecrets]:
    (
        key,
        tenant,
        display,
        scopes,
        rate,
        expire,
        ctime,
        rtime,
        prev_expire,
        revoke,
        revision,
        shash,
        phash,
    ) = row
    k = ApiKey(
        key=key,
        tenant=tenant,
        display_name=display,
        scopes=json.loads(scopes),
        rate_limit=from_plain(RateLimit, json.loads(rate)),
        expire_time=_opt(expire),
        create_time=int(ctime),
        rotate_time=_opt(rtime),
        previous_expire_time=_opt(prev_expire),
        revoke_time=_opt(revoke),
        revision=int(revision),
    )
    return k, KeySecrets(secret_hash=shash, previous_hash=phash, previous_expire_time=_opt(prev_expire))
