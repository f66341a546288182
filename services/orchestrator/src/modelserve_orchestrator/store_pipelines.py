"""Pipelines: immutable numbered versions under a global name, owned by a tenant."""

from __future__ import annotations

import json

from modelserve_common.db import ConstraintViolation
from modelserve_common.errors import Aborted, FailedPrecondition
from modelserve_orchestrator.domain import ExecutionState, Pipeline, pipeline_from_dict
from modelserve_orchestrator.errors import PipelineAlreadyExists, PipelineNotFound
from modelserve_orchestrator.store_base import DEFAULT_TENANT, StoreBase, tenant_filter


class PipelineStore(StoreBase):
    async def put_pipeline(
        self, p: Pipeline, *, new: bool, now: float, owner: str = DEFAULT_TENANT, visible: str | None = None
    ) -> Pipeline:
        """Stores the next version (1 when ``new``, owned by ``owner``; ALREADY_EXISTS / NOT_FOUND
        otherwise). Pipeline names are global; an update of a pipeline that ``visible`` (a tenant,
        None: every tenant) cannot see is NOT_FOUND, and keeps the pipeline's owner."""
        spec = json.dumps(p.spec_dict(), separators=(",", ":"))
        try:
            async with self.db.transaction() as tx:
                row = await tx.fetchone(
                    "SELECT version, tenant FROM orch_pipelines WHERE name = ? ORDER BY version DESC LIMIT 1",
                    (p.name,),
                )
                latest = int(row[0]) if row else 0
                if new and latest:
                    if visible is not None and row is not None and row[1] != visible:
                        raise PipelineAlreadyExists(f"pipeline name {p.name!r} is taken")
                    raise PipelineAlreadyExists(f"pipeline {p.name!r} already exists (version {latest})")
                if not new and (
                    not latest or (visible is not None and row is not None and row[1] != visible)
                ):
                    raise PipelineNotFound(f"pipeline {p.name!r} not found")
                tenant = owner if new or row is None else str(row[1])
                await tx.execute(
                    "INSERT INTO orch_pipelines (name, version, spec, create_time, tenant) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (p.name, latest + 1, spec, now, tenant),
                )
        except ConstraintViolation:
            raise Aborted(f"pipeline {p.name!r} changed concurrently; retry") from None
        return pipeline_from_dict(json.loads(spec), latest + 1, now)

    async def get_pipeline(
        self, name: str, version: int = 0, *, tenant: str | None = None
    ) -> Pipeline | None:
        """The pipeline version (0: latest); None when missing or not ``tenant``'s (None: any)."""
        cond, extra = tenant_filter(tenant)
        async with self.db.autocommit() as tx:
            if version:
                row = await tx.fetchone(
                    "SELECT spec, version, create_time FROM orch_pipelines WHERE name = ? AND version = ?"
                    + cond,
                    (name, version, *extra),
                )
            else:
                row = await tx.fetchone(
                    "SELECT spec, version, create_time FROM orch_pipelines WHERE name = ?"
                    + cond
                    + " ORDER BY version DESC LIMIT 1",
                    (name, *extra),
                )
        return self._pipeline(row[0], int(row[1]), float(row[2])) if row else None

    async def list_pipelines(self, after: str, limit: int, *, tenant: str | None = None) -> list[Pipeline]:
        cond, extra = tenant_filter(tenant)
        async with self.db.autocommit() as tx:
            rows = await tx.fetch(
                "SELECT p.spec, p.version, p.create_time FROM orch_pipelines p "
                f"JOIN (SELECT name, MAX(version) AS v FROM orch_pipelines WHERE name > ?{cond} "
                "GROUP BY name "
                "ORDER BY name LIMIT ?) l ON p.name = l.name AND p.version = l.v ORDER BY p.name",
                (after, *extra, limit),
            )
        return [pipeline_from_dict(json.loads(r[0]), int(r[1]), float(r[2])) for r in rows]

    async def delete_pipeline(self, name: str, *, tenant: str | None = None) -> bool:
        """Deletes every version; refused (FAILED_PRECONDITION) while an execution of the pipeline
        is queued or running, so a name reused later (by any tenant) never inherits them."""
        cond, extra = tenant_filter(tenant)
        async with self.db.transaction() as tx:
            found = await tx.fetchone(
                f"SELECT 1 FROM orch_pipelines WHERE name = ?{cond} LIMIT 1", (name, *extra)
            )
            if found is None:
                return False
            pending = await tx.fetchone(  # names are global: any tenant's execution of it counts
                "SELECT COUNT(*) FROM orch_executions WHERE pipeline = ? AND state IN (?, ?)",
                (name, int(ExecutionState.QUEUED), int(ExecutionState.RUNNING)),
            )
            if pending and int(pending[0]) > 0:
                raise FailedPrecondition(
                    f"pipeline {name!r} has {int(pending[0])} queued or running executions; "
                    "cancel them (or let them finish) before deleting it"
                )
            return await tx.execute(f"DELETE FROM orch_pipelines WHERE name = ?{cond}", (name, *extra)) > 0
