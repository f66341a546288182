"""Model versions (numbered per model, with a status lifecycle) and aliases (a name for a
version, e.g. "prod")."""

from __future__ import annotations

import structlog

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import STATUSES, TRANSITIONS, Alias, ModelVersion
from modelserve_registry.store import now_us
from modelserve_registry.validation import (
    check_alias_name,
    check_etag,
    check_update_mask,
    check_version_input,
    require,
)

log = structlog.get_logger(__name__)

VERSION_MASK = ("description", "tags", "status", "status_message")


def check_transition(current: str, wanted: str) -> None:
    if wanted not in STATUSES:
        raise errors.InvalidField(f"status must be one of {list(STATUSES)}, got {wanted!r}")
    if wanted not in TRANSITIONS[current]:
        raise errors.InvalidTransition(f"version status cannot change from {current} to {wanted}")


class VersionOps(ServiceCore):
    # -- versions --------------------------------------------------------------------------
    async def create_version(self, caller: Caller, model_name: str, v: ModelVersion) -> ModelVersion:
        require(caller, "write")
        check_version_input(v, self._limits.max_tags, self._limits.max_text_bytes)
        await self._check_artifact_uri(
            v.artifact_uri, v.artifact_sha256
        )  # outside the write lock: it stats files
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            await self._check_code_permission(tx, caller, model, v.backend)
            number = await tx.next_version_number(model.name)
            now = now_us()
            v.model, v.version, v.create_time, v.update_time, v.aliases = model.name, number, now, now, []
            await tx.record("CREATED", model.tenant, model.name, v)
            await tx.insert_version(v)
        self._notify()
        log.info("model_version.created", model=v.model, version=v.version)
        return v

    async def get_version(self, caller: Caller, model_name: str, ref: str) -> ModelVersion:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            return await self._version(tx, model, ref)

    async def list_versions(
        self, caller: Caller, model_name: str, page_size: int, page_token: str
    ) -> tuple[list[ModelVersion], str]:
        require(caller, "read")
        page = self._page(page_token, page_size, "versions:" + model_name)
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            versions = await tx.list_versions(model.name, page.offset, page.size)
        return versions, self._next_token(page, len(versions))

    async def update_version(
        self, caller: Caller, v: ModelVersion, etag: str, paths: list[str]
    ) -> ModelVersion:
        require(caller, "write")
        check_update_mask(paths, VERSION_MASK)
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, v.model, write=True)
            if v.version <= 0:
                raise errors.InvalidField(f"model_version.version must be a version number, got {v.version}")
            current = await self._version(tx, model, str(v.version))
            check_etag("model version", etag, current.revision)
            if "description" in paths:
                current.description = self._text("description", v.description)
            if "tags" in paths:
                current.tags = self._tags("tags", v.tags)
            if "status" in paths and v.status != current.status:
                check_transition(current.status, v.status)
                current.status = v.status
            if "status_message" in paths:
                current.status_message = self._text("status_message", v.status_message)
            current.update_time = now_us()
            await tx.record("UPDATED", model.tenant, model.name, current)
            await tx.update_version(current)
        self._notify()
        return current

    async def delete_version(self, caller: Caller, model_name: str, ref: str, etag: str) -> None:
        require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            current = await self._version(tx, model, ref)
            check_etag("model version", etag, current.revision)
            deployment = await tx.get_deployment(model.name)
            if deployment is not None and any(t.version == current.version for t in deployment.targets):
                raise errors.StillDeployed(
                    f"version {current.version} of model {model.name!r} is deployed: undeploy it first"
                )
            for alias in await tx.list_aliases(model.name):
                if alias.version == current.version:
                    await tx.record("DELETED", model.tenant, model.name, alias)
            await tx.record("DELETED", model.tenant, model.name, current)
            await tx.delete_version(model.name, current.version)
        self._notify()

    # -- aliases ---------------------------------------------------------------------------
    async def set_alias(self, caller: Caller, model_name: str, alias: str, ref: str, etag: str) -> Alias:
        require(caller, "write")
        check_alias_name(alias)
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            version = await self._version(tx, model, ref)
            existing = await tx.get_alias(model.name, alias)
            if existing is not None:
                check_etag("alias", etag, existing.revision)
            elif etag:
                raise errors.EtagMismatch(f"alias {alias!r} does not exist yet but an etag was given")
            result = Alias(model=model.name, alias=alias, version=version.version, update_time=now_us())
            await tx.record("UPDATED" if existing else "CREATED", model.tenant, model.name, result)
            await tx.upsert_alias(result)
        self._notify()
        return result

    async def get_alias(self, caller: Caller, model_name: str, alias: str) -> Alias:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            found = await tx.get_alias(model.name, alias)
        if found is None:
            raise errors.AliasNotFound(f"model {model_name!r} has no alias {alias!r}")
        return found

    async def list_aliases(self, caller: Caller, model_name: str) -> list[Alias]:
        require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            return await tx.list_aliases(model.name)

    async def delete_alias(self, caller: Caller, model_name: str, alias: str, etag: str) -> None:
        require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            found = await tx.get_alias(model.name, alias)
            if found is None:
                raise errors.AliasNotFound(f"model {model_name!r} has no alias {alias!r}")
            check_etag("alias", etag, found.revision)
            await tx.record("DELETED", model.tenant, model.name, found)
            await tx.delete_alias(model.name, alias)
        self._notify()
