"""Models: create, read, list, update (description, tags, shared) and delete."""

from __future__ import annotations

import hashlib

import structlog

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import Model
from modelserve_registry.store import StoreTx, now_us
from modelserve_registry.validation import (
    check_etag,
    check_name,
    check_update_mask,
    parse_filter,
    parse_order_by,
    require,
)

log = structlog.get_logger(__name__)

MODEL_MASK = ("description", "tags", "shared")


class ModelOps(ServiceCore):
    async def create_model(self, caller: Caller, model: Model) -> Model:
        require(caller, "write")
        check_name("model", model.name)
        tenant = caller.tenant if caller.tenant is not None else (model.tenant or "default")
        if model.shared and not caller.is_trusted:
            raise errors.PlatformOnly("only a platform administrator may set Model.shared")
        self._text("description", model.description)
        tags = self._tags("tags", model.tags)
        async with self._store.transaction(write=True) as tx:
            owner = await tx.get_tenant(tenant)
            if owner is None:
                raise errors.TenantNotFound(f"tenant {tenant!r} not found")
            if await tx.get_model(model.name) is not None:
                raise errors.ModelAlreadyExists(f"model {model.name!r} already exists")
            if owner.max_models and await tx.count_models(tenant) >= owner.max_models:
                raise errors.ModelQuotaExceeded(
                    f"tenant {tenant!r} owns {owner.max_models} models, its limit"
                )
            now = now_us()
            created = Model(
                name=model.name,
                tenant=tenant,
                description=model.description,
                tags=tags,
                create_time=now,
                update_time=now,
                shared=model.shared,
            )
            await tx.record("CREATED", tenant, created.name, created)
            await tx.insert_model(created)
        self._notify()
        log.info("model.created", model=created.name, tenant=tenant)
        return created

    async def get_model(self, caller: Caller, name: str) -> Model:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            return await self._model(tx, caller, name)

    async def list_models(
        self, caller: Caller, *, filter: str, order_by: str, page_size: int, page_token: str
    ) -> tuple[list[Model], str]:
        require(caller, "read")
        terms = parse_filter(filter)
        order = parse_order_by(order_by)
        page = self._page(
            page_token, page_size, hashlib.sha256(f"{filter}\n{order_by}".encode()).hexdigest()[:16]
        )
        tenant = None if caller.is_trusted else caller.tenant
        async with self._store.transaction(write=False) as tx:
            models = await tx.list_models(
                tenant=tenant, terms=terms, order=order, offset=page.offset, limit=page.size
            )
        return models, self._next_token(page, len(models))

    async def update_model(self, caller: Caller, model: Model, etag: str, paths: list[str]) -> Model:
        require(caller, "write")
        check_update_mask(paths, MODEL_MASK)
        if "shared" in paths and not caller.is_trusted:
            raise errors.PlatformOnly("only a platform administrator may set Model.shared")
        async with self._store.transaction(write=True) as tx:
            current = await self._model(tx, caller, model.name, write=True)
            check_etag("model", etag, current.revision)
            if "description" in paths:
                current.description = self._text("description", model.description)
            if "tags" in paths:
                current.tags = self._tags("tags", model.tags)
            toggled = "shared" in paths and model.shared != current.shared
            if "shared" in paths:
                current.shared = model.shared
            current.update_time = now_us()
            await tx.record("UPDATED", current.tenant, current.name, current)
            await tx.update_model(current)
            if toggled:
                await _follow_shared(tx, current)
        self._notify()
        if toggled:
            log.info("model.shared_changed", model=current.name, shared=current.shared)
        return current

    async def delete_model(self, caller: Caller, name: str, etag: str) -> None:
        require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            current = await self._model(tx, caller, name, write=True)
            check_etag("model", etag, current.revision)
            deployment = await tx.get_deployment(name)
            if deployment is not None and deployment.targets:
                raise errors.StillDeployed(
                    f"model {name!r} is deployed (versions {[t.version for t in deployment.targets]}): "
                    "undeploy it first"
                )
            await tx.record("DELETED", current.tenant, name, current)
            await tx.delete_model(name)
        self._notify()


async def _follow_shared(tx: StoreTx, model: Model) -> None:
    """Deployment.shared copies the model's: followers learn of the change on Watch."""
    deployment = await tx.get_deployment(model.name)
    if deployment is None:
        return
    deployment.shared = model.shared
    deployment.update_time = model.update_time
    await tx.record("UPDATED", model.tenant, model.name, deployment)
    await tx.upsert_deployment(deployment)
