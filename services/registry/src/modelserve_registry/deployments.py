"""Deployments: which versions of a model serve, with what weights, mirrors, batching overrides
and rate limit. Deployment.shared copies Model.shared."""

from __future__ import annotations

import structlog

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import Deployment, Model, Target
from modelserve_registry.prediction_logs import check_prediction_logging
from modelserve_registry.store import StoreTx, now_us
from modelserve_registry.validation import (
    check_batching,
    check_etag,
    check_rate_limit,
    check_targets,
    require,
)

log = structlog.get_logger(__name__)


class DeploymentOps(ServiceCore):
    async def _targets(self, tx: StoreTx, caller: Caller, model: Model, wanted: list[Target]) -> list[Target]:
        """The requested targets resolved to version numbers: each must exist, not be FAILED,
        and pass the code-execution permission of the model's tenant."""
        targets: list[Target] = []
        for i, t in enumerate(wanted):
            version = await self._version(tx, model, t.requested)
            if version.status == "FAILED":
                raise errors.InvalidTransition(
                    f"targets[{i}]: version {version.version} is FAILED ({version.status_message}); "
                    "it cannot be deployed"
                )
            await self._check_code_permission(tx, caller, model, version.backend)
            targets.append(
                Target(version=version.version, weight=t.weight, mirror=t.mirror, requested=t.requested)
            )
        check_targets(targets)
        return targets

    async def update_deployment(self, caller: Caller, d: Deployment, etag: str) -> Deployment:
        require(caller, "write")
        check_batching("batching_overrides", d.batching_overrides)
        check_rate_limit("rate_limit", d.rate_limit)
        check_prediction_logging("prediction_logging", d.prediction_logging)
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, d.model, write=True)
            current = await tx.get_deployment(model.name)
            check_etag("deployment", etag, current.revision if current else 0)
            targets = await self._targets(tx, caller, model, d.targets)
            result = await _replace(tx, model, current, targets, d)
        self._notify()
        log.info(
            "deployment.updated", model=model.name, targets=[(t.version, t.weight, t.mirror) for t in targets]
        )
        return result

    async def rollback_deployment(self, caller: Caller, model_name: str, etag: str) -> Deployment:
        """Restores the deployment the model had before its last change; the replaced one becomes
        the previous (a second rollback undoes the first). The same checks as update_deployment:
        write scope, ownership, etag, every target still deployable (exists, not FAILED, the
        tenant's code-execution permission)."""
        require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            current = await tx.get_deployment(model.name)
            check_etag("deployment", etag, current.revision if current else 0)
            previous = await tx.get_previous_deployment(model.name)
            if current is None or previous is None:
                raise errors.NothingToRollBack(
                    f"model {model.name!r} has no previous deployment to roll back to"
                )
            wanted = [
                Target(version=t.version, weight=t.weight, mirror=t.mirror, requested=str(t.version))
                for t in previous.targets
            ]
            targets = await self._targets(tx, caller, model, wanted)
            for restored, old in zip(targets, previous.targets, strict=True):
                restored.requested = old.requested or restored.requested
            result = await _replace(tx, model, current, targets, previous)
        self._notify()
        log.info(
            "deployment.rolled_back",
            model=model.name,
            targets=[(t.version, t.weight, t.mirror) for t in targets],
        )
        return result

    async def get_deployment(self, caller: Caller, model_name: str) -> Deployment:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            found = await tx.get_deployment(model.name)
        return found or Deployment(model=model.name, tenant=model.tenant, shared=model.shared)

    async def list_deployments(self, caller: Caller) -> tuple[list[Deployment], int]:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            revision, _ = await tx.revisions()
            found = await tx.list_deployments(None if caller.is_trusted else caller.tenant)
        return [d for d in found if d.targets], revision


async def _replace(
    tx: StoreTx, model: Model, current: Deployment | None, targets: list[Target], spec: Deployment
) -> Deployment:
    """Writes the model's new deployment (resolved targets, the rest from ``spec``), records the
    change for Watch and keeps ``current`` as the previous one (RollbackDeployment)."""
    result = Deployment(
        model=model.name,
        tenant=model.tenant,
        targets=targets,
        batching_overrides=spec.batching_overrides,
        rate_limit=spec.rate_limit,
        update_time=now_us(),
        shared=model.shared,
        prediction_logging=spec.prediction_logging,
    )
    await tx.record("UPDATED" if current else "CREATED", model.tenant, model.name, result)
    await tx.upsert_deployment(result)
    await tx.set_previous_deployment(model.name, current)
    return result
