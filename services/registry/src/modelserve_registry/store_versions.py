"""SQL of model versions, aliases and blobs (part of ``StoreTx``, store.py)."""

from __future__ import annotations

import json
from typing import Any

from modelserve_registry.db import Row
from modelserve_registry.domain import Alias, Batching, ModelVersion, TensorSpec, from_plain, to_plain
from modelserve_registry.store_base import TxBase, dumps


class VersionStatements(TxBase):
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
                dumps(v.tags),
                v.artifact_uri,
                v.artifact_sha256,
                v.backend,
                dumps(_version_spec(v)),
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
                dumps(v.tags),
                v.status,
                v.status_message,
                v.revision,
                v.update_time,
                v.model,
                v.version,
            ),
        )

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

    # -- blobs (uploaded artifacts; see artifacts.py) ----------------------------------------
    async def touch_blob(self, sha256: str, size: int, now: int, tenant: str) -> None:
        """Records a stored blob uploaded by ``tenant``, or marks a known one as just used (the
        sweeper spares it) by its latest uploader."""
        await self._tx.execute(
            "INSERT INTO blobs (sha256, size_bytes, touch_time, tenant) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET touch_time = excluded.touch_time, tenant = excluded.tenant",
            (sha256, size, now, tenant),
        )

    async def tenant_storage_used(self, tenant: str, *, excluding: str = "") -> int:
        """Bytes of the distinct blobs the tenant's versions reference, plus those it uploaded
        that no version references and the sweeper has not deleted yet (a deleted version's
        bytes count until they are swept); ``excluding``: leave that blob out."""
        row = await self._tx.fetchone(
            "SELECT COALESCE(SUM(b.size_bytes), 0) FROM blobs b WHERE b.sha256 <> ? AND (b.sha256 IN ("
            "SELECT substr(v.artifact_uri, 13) FROM model_versions v JOIN models m ON m.name = v.model "
            "WHERE m.tenant = ? AND v.artifact_uri LIKE ?) OR (b.tenant = ? AND NOT EXISTS ("
            "SELECT 1 FROM model_versions v WHERE v.artifact_uri = 'blob:sha256:' || b.sha256)))",
            (excluding, tenant, "blob:sha256:%", tenant),
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
