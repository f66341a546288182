"""What every part of the registry service shares: the store, the limits, the change-stream
wake-up, and the lookups under tenancy (a model, version or tenant the caller may see).

Tenancy: ``Caller.tenant is None`` is a trusted caller (no tenant metadata: the platform
administrator or an in-cluster service) with every right. A tenant caller is confined to its own
tenant whatever its scopes. Another tenant's resource answers NOT_FOUND with the same message as
a missing one, so existence does not leak. Shared models (Model.shared, set only by the platform
administrator) are readable by every tenant and writable only by their owner."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from modelserve_common.artifact_uri import resolve_artifact_uri
from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.domain import CODE_BACKENDS, Model, ModelVersion, Tenant
from modelserve_registry.paging import Page, next_token, open_page
from modelserve_registry.s3_refs import check_s3_reference, is_s3_uri
from modelserve_registry.store import RegistryStore, StoreTx
from modelserve_registry.validation import LATEST, check_name, check_tags, check_text

MAX_VERSION_DIGITS = 18  # a version number fits a signed 64-bit column (9.2e18)


@dataclass(frozen=True)
class Limits:
    max_page_size: int = 1000
    max_tags: int = 64
    max_text_bytes: int = 4096
    key_grace_period_s: float = 86400.0
    max_key_rotation_grace_s: float = 30 * 86400.0
    artifact_roots: tuple[Path, ...] = dataclasses.field(default_factory=tuple)
    s3_allowed: tuple[tuple[str, str], ...] = ()
    """(bucket, key prefix) pairs an s3:// artifact_uri must lie under (s3_refs.py)."""
    watch_poll_interval_s: float = 0.5
    watch_progress_interval_s: float = 15.0


class ServiceCore:
    """The state and helpers the registry's operation groups (models.py, versions.py, …) share;
    RegistryService (service.py) combines the groups."""

    def __init__(self, store: RegistryStore, limits: Limits | None = None) -> None:
        self._store = store
        self._limits = limits or Limits()
        self._wake = asyncio.Event()

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    # -- bounds from the limits --------------------------------------------------------------
    def _text(self, field: str, value: str) -> str:
        return check_text(self._limits.max_text_bytes, field, value)

    def _tags(self, field: str, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(self._limits.max_tags, self._limits.max_text_bytes, field, tags)

    def _page(self, token: str, size: int, fingerprint: str) -> Page:
        return open_page(token, size, fingerprint, self._limits.max_page_size)

    @staticmethod
    def _next_token(page: Page, got: int) -> str:
        return next_token(page, got)

    async def _check_artifact_uri(self, uri: str, sha256: str = "") -> None:
        """file:// URIs under REGISTRY_ARTIFACT_ROOTS (modelserve_common.artifact_uri holds the
        rules; its refusal names the rule and never a fact about the file), or s3://bucket/key
        with a sha256 under REGISTRY_ARTIFACT_S3_ALLOWED (s3_refs.py)."""
        if not uri:
            raise errors.InvalidField(
                "artifact_uri is required: a file:///absolute/path under an artifact root"
            )
        if is_s3_uri(uri):
            check_s3_reference(uri, sha256, self._limits.s3_allowed)
            return
        await asyncio.to_thread(
            resolve_artifact_uri, uri, self._limits.artifact_roots, max_length=self._limits.max_text_bytes
        )

    # -- lookups under tenancy -------------------------------------------------------------
    async def _model(self, tx: StoreTx, caller: Caller, name: str, *, write: bool = False) -> Model:
        """The model if the caller may see it (its tenant's, or shared); a write of another
        tenant's shared model is PERMISSION_DENIED; any other tenant's model is NOT_FOUND with
        the message of a missing one."""
        check_name("model", name)
        model = await tx.get_model(name)
        if model is None:
            raise errors.ModelNotFound(f"model {name!r} not found")
        if caller.can_see(model.tenant):
            return model
        if model.shared:
            if write:
                raise errors.SharedModelReadOnly(
                    f"model {name!r} is shared read-only; only its owning tenant may change it"
                )
            return model
        raise errors.ModelNotFound(f"model {name!r} not found")

    async def _check_code_permission(self, tx: StoreTx, caller: Caller, model: Model, backend: str) -> None:
        """A tenant caller may register or deploy a version whose backend runs user code only
        while its tenant has code_execution_allowed (checked at every such write: it may have
        been revoked since the version was registered)."""
        if backend not in CODE_BACKENDS or caller.is_trusted:
            return
        owner = await tx.get_tenant(model.tenant)
        if owner is None or not owner.code_execution_allowed:
            raise errors.CodeExecutionNotAllowed(
                f"tenant {model.tenant!r} lacks code_execution_allowed; a platform administrator "
                "grants it with UpdateTenant"
            )

    async def _resolve(self, tx: StoreTx, model: Model, ref: str) -> int:
        """A version number from a number, an alias or "latest"."""
        if not ref:
            raise errors.InvalidField("version is required (a number, an alias or 'latest')")
        if ref.isascii() and ref.isdigit():
            if len(ref) > MAX_VERSION_DIGITS:  # no such version; int() and the database stay safe
                raise errors.ModelVersionNotFound(f"model {model.name!r} has no version {ref[:32]!r}")
            number = int(ref)
        elif ref == LATEST:
            number = model.latest_version
        else:
            alias = await tx.get_alias(model.name, ref)
            if alias is None:
                raise errors.ModelVersionNotFound(f"model {model.name!r} has no version or alias {ref!r}")
            number = alias.version
        if number <= 0:
            raise errors.ModelVersionNotFound(f"model {model.name!r} has no version {ref!r}")
        return number

    async def _version(self, tx: StoreTx, model: Model, ref: str) -> ModelVersion:
        number = await self._resolve(tx, model, ref)
        version = await tx.get_version(model.name, number)
        if version is None:
            raise errors.ModelVersionNotFound(f"model {model.name!r} has no version {ref!r}")
        return version

    async def _tenant(self, tx: StoreTx, caller: Caller, name: str) -> Tenant:
        tenant = await tx.get_tenant(name) if name else None
        if tenant is None or not caller.can_see(tenant.name):
            raise errors.TenantNotFound(f"tenant {name!r} not found")
        return tenant
