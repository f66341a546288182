"""Tenants: created, listed and changed by the platform administrator; a tenant caller may read
its own."""

from __future__ import annotations

import structlog

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import Tenant
from modelserve_registry.store import now_us
from modelserve_registry.validation import (
    check_etag,
    check_max_models,
    check_name,
    check_rate_limit,
    check_update_mask,
    require,
)

log = structlog.get_logger(__name__)

TENANT_MASK = ("display_name", "rate_limit", "max_models", "code_execution_allowed", "storage_quota_bytes")


def check_storage_quota(quota: int) -> None:
    if quota < 0:
        raise errors.InvalidField(f"storage_quota_bytes must be >= 0 (0: the registry default), got {quota}")


def _platform_only(caller: Caller, what: str) -> None:
    if not caller.is_trusted:
        raise errors.MissingScope(f"{what} is for the platform administrator")


class TenantOps(ServiceCore):
    async def create_tenant(self, caller: Caller, t: Tenant) -> Tenant:
        _platform_only(caller, "creating tenants")
        check_name("tenant", t.name)
        self._text("display_name", t.display_name)
        check_rate_limit("rate_limit", t.rate_limit)
        check_max_models(t.max_models)
        check_storage_quota(t.storage_quota_bytes)
        async with self._store.transaction(write=True) as tx:
            if await tx.get_tenant(t.name) is not None:
                raise errors.TenantAlreadyExists(f"tenant {t.name!r} already exists")
            t.create_time = now_us()
            await tx.record("CREATED", t.name, "", t)
            await tx.insert_tenant(t)
        self._notify()
        return t

    async def get_tenant(self, caller: Caller, name: str) -> Tenant:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            tenant = await self._tenant(tx, caller, name)
            tenant.storage_used_bytes = await tx.tenant_storage_used(tenant.name)
            return tenant

    async def list_tenants(self, caller: Caller, page_size: int, page_token: str) -> tuple[list[Tenant], str]:
        _platform_only(caller, "listing tenants")
        page = self._page(page_token, page_size, "tenants")
        async with self._store.transaction(write=False) as tx:
            tenants = await tx.list_tenants(page.offset, page.size)
            for tenant in tenants:
                tenant.storage_used_bytes = await tx.tenant_storage_used(tenant.name)
        return tenants, self._next_token(page, len(tenants))

    def _check_tenant_update(self, t: Tenant, paths: list[str]) -> None:
        if not paths:
            raise errors.InvalidField(f"update_mask is required: any of {', '.join(TENANT_MASK)}")
        check_update_mask(paths, TENANT_MASK)
        check_name("tenant", t.name)
        if "display_name" in paths:
            self._text("display_name", t.display_name)
        if "rate_limit" in paths:
            check_rate_limit("rate_limit", t.rate_limit)
        if "max_models" in paths:
            check_max_models(t.max_models)
        if "storage_quota_bytes" in paths:
            check_storage_quota(t.storage_quota_bytes)

    async def update_tenant(self, caller: Caller, t: Tenant, etag: str, paths: list[str]) -> Tenant:
        """Platform administrator only: display_name, rate_limit, max_models, code_execution_allowed."""
        _platform_only(caller, "updating tenants")
        self._check_tenant_update(t, paths)
        async with self._store.transaction(write=True) as tx:
            current = await self._tenant(tx, caller, t.name)
            check_etag("tenant", etag, current.revision)
            for field in paths:
                setattr(current, field, getattr(t, field))
            await tx.record("UPDATED", current.name, "", current)
            await tx.update_tenant(current)
        self._notify()
        log.info(
            "tenant.updated",
            tenant=current.name,
            fields=sorted(paths),
            code_execution_allowed=current.code_execution_allowed,
        )
        return current
