"""The registry's rules: validation, tenancy and scopes, etags, version numbering, deployment
checks, API keys and the change stream. All SQL is in store.py.

Tenancy: ``Caller.tenant is None`` is a trusted caller (no tenant metadata: the platform
administrator or an in-cluster service) with every right. A tenant caller needs the scope an RPC
asks for (read, write; tenant-admin for its API keys; tenant-admin implies read, write and infer)
and is confined to its own tenant whatever its scopes ("admin" in a tenant caller's scopes grants
nothing). Another tenant's resource answers NOT_FOUND with the same message as a missing one, so
existence does not leak. Shared models (Model.shared, set only by the platform administrator) are
readable by every tenant and writable only by their owner."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from modelserve_common.artifact_uri import resolve_artifact_uri
from modelserve_registry import errors
from modelserve_registry.domain import (
    BACKENDS,
    CODE_BACKENDS,
    PLATFORM_SCOPE,
    SCOPES,
    STATUSES,
    TENANT_ADMIN,
    TRANSITIONS,
    Alias,
    ApiKey,
    Batching,
    Caller,
    Change,
    Deployment,
    KeySecrets,
    Model,
    ModelVersion,
    RateLimit,
    Target,
    Tenant,
    TensorSpec,
)
from modelserve_registry.store import MAX_TIME_US, FilterTerm, RegistryStore, StoreTx, now_us

log = structlog.get_logger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
KEY_RE = re.compile(r"^k[0-9a-f]{12}$")
DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "BF16",
    "FP32",
    "FP64",
    "BYTES",
}
LATEST = "latest"
SECRET_PREFIX = "ms"
FILTER_FIELDS = {"name", "description", "tenant"}
FILTER_TERM_RE = re.compile(r'^\s*([a-z_]+(?:\.[A-Za-z0-9_.-]+)?)\s*(!=|=|:)\s*"((?:[^"\\]|\\.)*)"\s*$')
WATCH_BATCH = 500


@dataclass(frozen=True)
class Limits:
    max_page_size: int = 1000
    max_tags: int = 64
    max_text_bytes: int = 4096
    key_grace_period_s: float = 86400.0
    max_key_rotation_grace_s: float = 30 * 86400.0
    artifact_roots: tuple[Path, ...] = dataclasses.field(default_factory=tuple)
    watch_poll_interval_s: float = 0.5
    watch_progress_interval_s: float = 15.0


@dataclass
class Page:
    offset: int
    size: int
    fingerprint: str


def check_name(kind: str, name: str) -> None:
    if not name:
        raise errors.InvalidField(f"{kind} name is required")
    if not NAME_RE.match(name) or ".." in name:
        raise errors.InvalidField(
            f"{kind} name must match ^[a-z0-9][a-z0-9._-]{{0,62}}$ without '..', got {name[:80]!r}"
        )


def _require(caller: Caller, scope: str) -> None:
    if caller.has(scope):
        return
    raise errors.MissingScope(
        f"this call needs the {scope!r} scope; the key has {sorted(caller.scopes) or 'none'}"
    )


def _check_etag(kind: str, given: str, revision: int) -> None:
    if given and given != str(revision):
        raise errors.EtagMismatch(
            f"{kind} was changed since it was read (etag {given!r}, current {str(revision)!r}): "
            "read it again and retry"
        )


def _hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    return f"{salt}${hashlib.sha256((salt + secret).encode()).hexdigest()}"


def _matches(stored: str | None, secret: str) -> bool:
    salt, _, digest = (stored or "x$").partition("$")
    candidate = hashlib.sha256((salt + secret).encode()).hexdigest()
    return hmac.compare_digest(candidate, digest) and stored is not None


class RegistryService:
    def __init__(self, store: RegistryStore, limits: Limits | None = None) -> None:
        self._store = store
        self._limits = limits or Limits()
        self._wake = asyncio.Event()

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    # -- validation helpers ----------------------------------------------------------------
    def _text(self, field: str, value: str) -> str:
        if len(value.encode()) > self._limits.max_text_bytes:
            raise errors.InvalidField(
                f"{field} is {len(value.encode())} bytes; at most {self._limits.max_text_bytes} allowed"
            )
        return value

    def _tags(self, field: str, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > self._limits.max_tags:
            raise errors.InvalidField(
                f"{field} has {len(tags)} entries; at most {self._limits.max_tags} allowed"
            )
        for k, v in tags.items():
            if not k or len(k) > 128:
                raise errors.InvalidField(f"{field} keys must be 1 to 128 characters, got {k[:140]!r}")
            self._text(f"{field}[{k!r}]", v)
        return dict(tags)

    def _page(self, token: str, size: int, fingerprint: str) -> Page:
        if size < 0:
            raise errors.InvalidField(f"page_size must be >= 0, got {size}")
        size = min(size or 50, self._limits.max_page_size)
        if not token:
            return Page(0, size, fingerprint)
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            offset, fp = int(data["o"]), str(data["f"])
        except Exception:
            raise errors.InvalidField("page_token is not a token this registry issued") from None
        if fp != fingerprint:
            raise errors.InvalidField("page_token was issued for a different filter or order_by")
        return Page(offset, size, fingerprint)

    @staticmethod
    def _next_token(page: Page, got: int) -> str:
        if got < page.size:
            return ""
        raw = json.dumps({"o": page.offset + got, "f": page.fingerprint}).encode()
        return base64.urlsafe_b64encode(raw).decode()

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
        if backend not in CODE_BACKENDS or caller.is_admin:
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
        if ref.isdigit():
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

    # -- models ----------------------------------------------------------------------------
    async def create_model(self, caller: Caller, model: Model) -> Model:
        _require(caller, "write")
        check_name("model", model.name)
        tenant = caller.tenant if caller.tenant is not None else (model.tenant or "default")
        if model.shared and not caller.is_admin:
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
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            return await self._model(tx, caller, name)

    async def list_models(
        self, caller: Caller, *, filter: str, order_by: str, page_size: int, page_token: str
    ) -> tuple[list[Model], str]:
        _require(caller, "read")
        terms = parse_filter(filter)
        order = parse_order_by(order_by)
        page = self._page(
            page_token, page_size, hashlib.sha256(f"{filter}\n{order_by}".encode()).hexdigest()[:16]
        )
        tenant = None if caller.is_admin else caller.tenant
        async with self._store.transaction(write=False) as tx:
            models = await tx.list_models(
                tenant=tenant, terms=terms, order=order, offset=page.offset, limit=page.size
            )
        return models, self._next_token(page, len(models))

    async def update_model(self, caller: Caller, model: Model, etag: str, paths: list[str]) -> Model:
        _require(caller, "write")
        for p in paths:
            if p not in ("description", "tags", "shared"):
                raise errors.InvalidField(
                    f"update_mask path {p!r} cannot be changed; allowed: description, tags, shared"
                )
        if "shared" in paths and not caller.is_admin:
            raise errors.PlatformOnly("only a platform administrator may set Model.shared")
        async with self._store.transaction(write=True) as tx:
            current = await self._model(tx, caller, model.name, write=True)
            _check_etag("model", etag, current.revision)
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
            deployment = await tx.get_deployment(current.name) if toggled else None
            if deployment is not None:
                # Deployment.shared copies the model's: followers learn of the change on Watch.
                deployment.shared = current.shared
                deployment.update_time = current.update_time
                await tx.record("UPDATED", current.tenant, current.name, deployment)
                await tx.upsert_deployment(deployment)
        self._notify()
        if toggled:
            log.info("model.shared_changed", model=current.name, shared=current.shared)
        return current

    async def delete_model(self, caller: Caller, name: str, etag: str) -> None:
        _require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            current = await self._model(tx, caller, name, write=True)
            _check_etag("model", etag, current.revision)
            deployment = await tx.get_deployment(name)
            if deployment is not None and deployment.targets:
                raise errors.StillDeployed(
                    f"model {name!r} is deployed (versions {[t.version for t in deployment.targets]}): "
                    "undeploy it first"
                )
            await tx.record("DELETED", current.tenant, name, current)
            await tx.delete_model(name)
        self._notify()

    # -- versions --------------------------------------------------------------------------
    async def _check_artifact_uri(self, uri: str) -> None:
        """file:// URIs under REGISTRY_ARTIFACT_ROOTS only (modelserve_common.artifact_uri holds
        the rules; its refusal names the rule and never a fact about the file)."""
        if not uri:
            raise errors.InvalidField(
                "artifact_uri is required: a file:///absolute/path under an artifact root"
            )
        await asyncio.to_thread(
            resolve_artifact_uri, uri, self._limits.artifact_roots, max_length=self._limits.max_text_bytes
        )

    def _check_version_input(self, v: ModelVersion) -> None:
        if not SHA256_RE.match(v.artifact_sha256):
            raise errors.InvalidField(
                f"artifact_sha256 must be 64 lowercase hex digits, got {v.artifact_sha256[:80]!r}"
            )
        if v.backend not in BACKENDS:
            raise errors.InvalidField(f"backend must be one of {list(BACKENDS)}, got {v.backend!r}")
        for field, specs in (("inputs", v.inputs), ("outputs", v.outputs)):
            seen: set[str] = set()
            for spec in specs:
                _check_tensor_spec(field, spec)
                if spec.name in seen:
                    raise errors.InvalidField(f"{field} has tensor {spec.name!r} twice")
                seen.add(spec.name)
        _check_batching("batching", v.batching)
        if v.status == "UNSPECIFIED":
            v.status = "PENDING"
        if v.status not in ("PENDING", "READY"):
            raise errors.InvalidField(f"a new version's status must be PENDING or READY, got {v.status!r}")
        self._text("description", v.description)
        self._text("status_message", v.status_message)
        self._tags("tags", v.tags)
        self._tags("metadata", v.metadata)
        self._text("lineage.source_run", v.source_run)
        self._text("lineage.source_uri", v.source_uri)

    async def create_version(self, caller: Caller, model_name: str, v: ModelVersion) -> ModelVersion:
        _require(caller, "write")
        self._check_version_input(v)
        await self._check_artifact_uri(v.artifact_uri)  # outside the write lock: it stats files
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
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            return await self._version(tx, model, ref)

    async def list_versions(
        self, caller: Caller, model_name: str, page_size: int, page_token: str
    ) -> tuple[list[ModelVersion], str]:
        _require(caller, "read")
        page = self._page(page_token, page_size, "versions:" + model_name)
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            versions = await tx.list_versions(model.name, page.offset, page.size)
        return versions, self._next_token(page, len(versions))

    async def update_version(
        self, caller: Caller, v: ModelVersion, etag: str, paths: list[str]
    ) -> ModelVersion:
        _require(caller, "write")
        allowed = ("description", "tags", "status", "status_message")
        for p in paths:
            if p not in allowed:
                raise errors.InvalidField(
                    f"update_mask path {p!r} cannot be changed; allowed: {', '.join(allowed)}"
                )
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, v.model, write=True)
            if v.version <= 0:
                raise errors.InvalidField(f"model_version.version must be a version number, got {v.version}")
            current = await self._version(tx, model, str(v.version))
            _check_etag("model version", etag, current.revision)
            if "description" in paths:
                current.description = self._text("description", v.description)
            if "tags" in paths:
                current.tags = self._tags("tags", v.tags)
            if "status" in paths and v.status != current.status:
                if v.status not in STATUSES:
                    raise errors.InvalidField(f"status must be one of {list(STATUSES)}, got {v.status!r}")
                if v.status not in TRANSITIONS[current.status]:
                    raise errors.InvalidTransition(
                        f"version status cannot change from {current.status} to {v.status}"
                    )
                current.status = v.status
            if "status_message" in paths:
                current.status_message = self._text("status_message", v.status_message)
            current.update_time = now_us()
            await tx.record("UPDATED", model.tenant, model.name, current)
            await tx.update_version(current)
        self._notify()
        return current

    async def delete_version(self, caller: Caller, model_name: str, ref: str, etag: str) -> None:
        _require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            current = await self._version(tx, model, ref)
            _check_etag("model version", etag, current.revision)
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
        _require(caller, "write")
        if not ALIAS_RE.match(alias) or ".." in alias or alias == LATEST:
            raise errors.InvalidField(
                f"alias must match ^[a-z][a-z0-9._-]{{0,62}}$ and not be 'latest', got {alias[:80]!r}"
            )
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            version = await self._version(tx, model, ref)
            existing = await tx.get_alias(model.name, alias)
            if existing is not None:
                _check_etag("alias", etag, existing.revision)
            elif etag:
                raise errors.EtagMismatch(f"alias {alias!r} does not exist yet but an etag was given")
            result = Alias(model=model.name, alias=alias, version=version.version, update_time=now_us())
            await tx.record("UPDATED" if existing else "CREATED", model.tenant, model.name, result)
            await tx.upsert_alias(result)
        self._notify()
        return result

    async def get_alias(self, caller: Caller, model_name: str, alias: str) -> Alias:
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            found = await tx.get_alias(model.name, alias)
        if found is None:
            raise errors.AliasNotFound(f"model {model_name!r} has no alias {alias!r}")
        return found

    async def list_aliases(self, caller: Caller, model_name: str) -> list[Alias]:
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            return await tx.list_aliases(model.name)

    async def delete_alias(self, caller: Caller, model_name: str, alias: str, etag: str) -> None:
        _require(caller, "write")
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            found = await tx.get_alias(model.name, alias)
            if found is None:
                raise errors.AliasNotFound(f"model {model_name!r} has no alias {alias!r}")
            _check_etag("alias", etag, found.revision)
            await tx.record("DELETED", model.tenant, model.name, found)
            await tx.delete_alias(model.name, alias)
        self._notify()

    # -- deployments -----------------------------------------------------------------------
    async def update_deployment(self, caller: Caller, d: Deployment, etag: str) -> Deployment:
        _require(caller, "write")
        _check_batching("batching_overrides", d.batching_overrides)
        _check_rate_limit("rate_limit", d.rate_limit)
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, d.model, write=True)
            current = await tx.get_deployment(model.name)
            _check_etag("deployment", etag, current.revision if current else 0)
            targets: list[Target] = []
            for i, t in enumerate(d.targets):
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
            _check_targets(targets)
            result = Deployment(
                model=model.name,
                tenant=model.tenant,
                targets=targets,
                batching_overrides=d.batching_overrides,
                rate_limit=d.rate_limit,
                update_time=now_us(),
                shared=model.shared,
            )
            await tx.record("UPDATED" if current else "CREATED", model.tenant, model.name, result)
            await tx.upsert_deployment(result)
        self._notify()
        log.info(
            "deployment.updated", model=model.name, targets=[(t.version, t.weight, t.mirror) for t in targets]
        )
        return result

    async def get_deployment(self, caller: Caller, model_name: str) -> Deployment:
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            found = await tx.get_deployment(model.name)
        return found or Deployment(model=model.name, tenant=model.tenant, shared=model.shared)

    async def list_deployments(self, caller: Caller) -> tuple[list[Deployment], int]:
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            revision, _ = await tx.revisions()
            found = await tx.list_deployments(None if caller.is_admin else caller.tenant)
        return [d for d in found if d.targets], revision

    # -- watch -----------------------------------------------------------------------------
    async def watch(self, caller: Caller, after_revision: int, model: str) -> AsyncIterator[Change]:
        """Changes above ``after_revision`` in revision order, then new ones as they commit; a
        Change with ``resource=None`` is a progress note carrying the current revision."""
        _require(caller, "read")
        tenant = None if caller.is_admin else caller.tenant
        async with self._store.transaction(write=False) as tx:
            if model:
                # a model the caller may read (its own, or shared): that model's tenant's changes
                tenant = None if caller.is_admin else (await self._model(tx, caller, model)).tenant
            head, compacted = await tx.revisions()
        if after_revision < 0:
            after = head
        elif after_revision < compacted:
            raise errors.RevisionCompacted(
                f"changes up to revision {compacted} were compacted; resume from {compacted} or later "
                "after listing the current state"
            )
        else:
            after = after_revision
        last_sent = time.monotonic()
        while True:
            wake = self._wake
            async with self._store.transaction(write=False) as tx:
                changes, scanned = await tx.changes_after(
                    after, tenant=tenant, model=model or None, limit=WATCH_BATCH
                )
            for change in changes:
                yield change
                last_sent = time.monotonic()
            moved = scanned > after
            after = max(after, scanned)
            if moved:
                continue
            if time.monotonic() - last_sent >= self._limits.watch_progress_interval_s:
                yield Change(revision=after, type="UPDATED", commit_time=now_us(), tenant="", resource=None)
                last_sent = time.monotonic()
            try:
                await asyncio.wait_for(wake.wait(), self._limits.watch_poll_interval_s)
            except TimeoutError:
                pass

    # -- tenants ---------------------------------------------------------------------------
    async def create_tenant(self, caller: Caller, t: Tenant) -> Tenant:
        if not caller.is_admin:
            raise errors.MissingScope("creating tenants is for the platform administrator")
        check_name("tenant", t.name)
        self._text("display_name", t.display_name)
        _check_rate_limit("rate_limit", t.rate_limit)
        if t.max_models < 0:
            raise errors.InvalidField(f"max_models must be >= 0, got {t.max_models}")
        async with self._store.transaction(write=True) as tx:
            if await tx.get_tenant(t.name) is not None:
                raise errors.TenantAlreadyExists(f"tenant {t.name!r} already exists")
            t.create_time = now_us()
            await tx.record("CREATED", t.name, "", t)
            await tx.insert_tenant(t)
        self._notify()
        return t

    async def _tenant(self, tx: StoreTx, caller: Caller, name: str) -> Tenant:
        tenant = await tx.get_tenant(name) if name else None
        if tenant is None or not caller.can_see(tenant.name):
            raise errors.TenantNotFound(f"tenant {name!r} not found")
        return tenant

    async def get_tenant(self, caller: Caller, name: str) -> Tenant:
        _require(caller, "read")
        async with self._store.transaction(write=False) as tx:
            return await self._tenant(tx, caller, name)

    async def list_tenants(self, caller: Caller, page_size: int, page_token: str) -> tuple[list[Tenant], str]:
        if not caller.is_admin:
            raise errors.MissingScope("listing tenants is for the platform administrator")
        page = self._page(page_token, page_size, "tenants")
        async with self._store.transaction(write=False) as tx:
            tenants = await tx.list_tenants(page.offset, page.size)
        return tenants, self._next_token(page, len(tenants))

    async def update_tenant(self, caller: Caller, t: Tenant, etag: str, paths: list[str]) -> Tenant:
        """Platform administrator only: display_name, rate_limit, max_models, code_execution_allowed."""
        if not caller.is_admin:
            raise errors.MissingScope("updating tenants is for the platform administrator")
        allowed = ("display_name", "rate_limit", "max_models", "code_execution_allowed")
        if not paths:
            raise errors.InvalidField(f"update_mask is required: any of {', '.join(allowed)}")
        for p in paths:
            if p not in allowed:
                raise errors.InvalidField(
                    f"update_mask path {p!r} cannot be changed; allowed: {', '.join(allowed)}"
                )
        check_name("tenant", t.name)
        if "display_name" in paths:
            self._text("display_name", t.display_name)
        if "rate_limit" in paths:
            _check_rate_limit("rate_limit", t.rate_limit)
        if "max_models" in paths and t.max_models < 0:
            raise errors.InvalidField(f"max_models must be >= 0, got {t.max_models}")
        async with self._store.transaction(write=True) as tx:
            current = await self._tenant(tx, caller, t.name)
            _check_etag("tenant", etag, current.revision)
            if "display_name" in paths:
                current.display_name = t.display_name
            if "rate_limit" in paths:
                current.rate_limit = t.rate_limit
            if "max_models" in paths:
                current.max_models = t.max_models
            if "code_execution_allowed" in paths:
                current.code_execution_allowed = t.code_execution_allowed
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

    # -- API keys --------------------------------------------------------------------------
    def _check_scopes(self, caller: Caller, scopes: list[str]) -> list[str]:
        if not scopes:
            raise errors.InvalidField(f"scopes is required: any of {list(SCOPES)}")
        for s in scopes:
            if s == PLATFORM_SCOPE:
                raise errors.InvalidField(f"scope {PLATFORM_SCOPE!r} is platform-only; use {TENANT_ADMIN!r}")
            if s not in SCOPES:
                raise errors.InvalidField(f"scope must be one of {list(SCOPES)}, got {s!r}")
            if not caller.has(s):
                raise errors.MissingScope(f"a key cannot grant the {s!r} scope that the caller lacks")
        return sorted(set(scopes), key=SCOPES.index)

    async def _key(self, tx: StoreTx, caller: Caller, tenant: str, key: str) -> tuple[ApiKey, KeySecrets]:
        await self._tenant(tx, caller, tenant)
        found = await tx.get_key(key) if KEY_RE.match(key) else None
        if found is None or found[0].tenant != tenant or found[0].revoke_time is not None:
            raise errors.ApiKeyNotFound(f"API key {key!r} of tenant {tenant!r} not found")
        return found

    async def create_key(self, caller: Caller, tenant: str, k: ApiKey) -> tuple[ApiKey, str]:
        _require(caller, TENANT_ADMIN)
        scopes = self._check_scopes(caller, k.scopes)
        self._text("display_name", k.display_name)
        _check_rate_limit("rate_limit", k.rate_limit)
        now = now_us()
        if k.expire_time is not None and not now < k.expire_time <= MAX_TIME_US:
            raise errors.InvalidField(
                "expire_time must be in the future and no later than 9999-12-31T23:59:59Z, "
                f"got {k.expire_time} microseconds since the epoch"
            )
        key_id = "k" + secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        created = ApiKey(
            key=key_id,
            tenant=tenant,
            display_name=k.display_name,
            scopes=scopes,
            rate_limit=k.rate_limit,
            expire_time=k.expire_time,
            create_time=now,
        )
        async with self._store.transaction(write=True) as tx:
            await self._tenant(tx, caller, tenant)
            await tx.record("CREATED", tenant, "", created)
            await tx.insert_key(created, KeySecrets(_hash_secret(secret), None, None))
        self._notify()
        log.info("api_key.created", tenant=tenant, key=key_id, scopes=scopes)
        return created, secret

    async def get_key(self, caller: Caller, tenant: str, key: str) -> ApiKey:
        _require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=False) as tx:
            return (await self._key(tx, caller, tenant, key))[0]

    async def list_keys(self, caller: Caller, tenant: str) -> list[ApiKey]:
        _require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=False) as tx:
            await self._tenant(tx, caller, tenant)
            return await tx.list_keys(tenant)

    async def rotate_key(
        self, caller: Caller, tenant: str, key: str, grace_s: float | None, etag: str
    ) -> tuple[ApiKey, str]:
        _require(caller, TENANT_ADMIN)
        grace = self._limits.key_grace_period_s if grace_s is None else grace_s
        limit = self._limits.max_key_rotation_grace_s
        if not (math.isfinite(grace) and 0 <= grace <= limit):
            raise errors.InvalidField(
                f"grace_period must be between 0 and {limit:g} seconds "
                f"(REGISTRY_MAX_KEY_ROTATION_GRACE_S), got {grace:g}s"
            )
        secret = f"{SECRET_PREFIX}_{key}_{secrets.token_urlsafe(32)}"
        async with self._store.transaction(write=True) as tx:
            current, stored = await self._key(tx, caller, tenant, key)
            _check_etag("API key", etag, current.revision)
            now = now_us()
            current.rotate_time = now
            current.previous_expire_time = now + int(grace * 1_000_000)
            new = KeySecrets(_hash_secret(secret), stored.secret_hash, current.previous_expire_time)
            await tx.record("UPDATED", tenant, "", current)
            await tx.update_key(current, new)
        self._notify()
        log.info("api_key.rotated", tenant=tenant, key=key, grace_s=grace)
        return current, secret

    async def delete_key(self, caller: Caller, tenant: str, key: str) -> None:
        _require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=True) as tx:
            current, _ = await self._key(tx, caller, tenant, key)
            current.revoke_time = now_us()
            current.previous_expire_time = None
            await tx.record("DELETED", tenant, "", current)
            await tx.update_key(current, KeySecrets("revoked$", None, None))
        self._notify()
        log.info("api_key.revoked", tenant=tenant, key=key)

    async def verify_key(self, caller: Caller, secret: str) -> tuple[ApiKey, RateLimit, int | None]:
        """(key, effective rate limit, when this secret stops working) or InvalidApiKey."""
        if not caller.is_admin:
            raise errors.MissingScope("verifying API keys is for the platform administrator")
        invalid = errors.InvalidApiKey("invalid API key")
        parts = secret.split("_", 2)
        if len(parts) != 3 or parts[0] != SECRET_PREFIX or not KEY_RE.match(parts[1]):
            raise invalid
        async with self._store.transaction(write=False) as tx:
            found = await tx.get_key(parts[1])
            tenant = await tx.get_tenant(found[0].tenant) if found else None
        if found is None or tenant is None:
            _matches(None, secret)  # same work as a real check
            raise invalid
        key, stored = found
        now = now_us()
        current_ok = _matches(stored.secret_hash, secret)
        previous_ok = _matches(stored.previous_hash, secret)
        if key.revoke_time is not None or (key.expire_time is not None and key.expire_time <= now):
            raise invalid
        expires = key.expire_time
        if not current_ok:
            in_grace = stored.previous_expire_time is not None and stored.previous_expire_time > now
            if not (previous_ok and in_grace):
                raise invalid
            assert stored.previous_expire_time is not None
            expires = min(expires or stored.previous_expire_time, stored.previous_expire_time)
        if PLATFORM_SCOPE in key.scopes:  # a key stored before migration 2: never platform-wide
            key.scopes = sorted(
                {TENANT_ADMIN if s == PLATFORM_SCOPE else s for s in key.scopes}, key=SCOPES.index
            )
        limit = key.rate_limit if key.rate_limit.requests_per_second > 0 else tenant.rate_limit
        return key, limit, expires


def parse_filter(text: str) -> list[FilterTerm]:
    """``field op "value"`` terms joined by AND (fields name, description, tenant, tags.<key>)."""
    if not text.strip():
        return []
    terms: list[FilterTerm] = []
    for raw in re.split(r"\s+AND\s+", text.strip()):
        m = FILTER_TERM_RE.match(raw)
        if not m:
            raise errors.InvalidField(
                f'filter term {raw[:100]!r} is not `field = "value"`, `field != "value"` or `field : "value"`'
            )
        field, op, value = m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))
        if field not in FILTER_FIELDS and not field.startswith("tags."):
            raise errors.InvalidField(
                f"cannot filter on {field!r}; fields: name, description, tenant, tags.<key>"
            )
        terms.append((field, op, value))
    return terms


def parse_order_by(text: str) -> list[tuple[str, bool]]:
    """``field [desc], …`` with fields name, create_time, update_time."""
    order: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        if (
            words[0] not in ("name", "create_time", "update_time")
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise errors.InvalidField(
                f"order_by {part!r}: expected name, create_time or update_time, then asc or desc"
            )
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order or [("name", False)]


def _check_tensor_spec(field: str, spec: TensorSpec) -> None:
    if not spec.name:
        raise errors.InvalidField(f"{field}: every tensor needs a name")
    if spec.datatype not in DATATYPES:
        raise errors.InvalidField(
            f"{field} tensor {spec.name!r}: datatype must be one of {sorted(DATATYPES)}, "
            f"got {spec.datatype!r}"
        )
    if any(d < -1 for d in spec.shape):
        raise errors.InvalidField(f"{field} tensor {spec.name!r}: dimensions must be >= -1, got {spec.shape}")


def _check_batching(field: str, b: Batching) -> None:
    for name in ("max_batch_size", "max_queue_delay_us", "max_queue_size"):
        if getattr(b, name) < 0:
            raise errors.InvalidField(f"{field}.{name} must be >= 0, got {getattr(b, name)}")
    if any(s <= 0 for s in b.preferred_batch_sizes):
        raise errors.InvalidField(
            f"{field}.preferred_batch_sizes must be positive, got {b.preferred_batch_sizes}"
        )
    if b.max_batch_size and any(s > b.max_batch_size for s in b.preferred_batch_sizes):
        raise errors.InvalidField(
            f"{field}.preferred_batch_sizes must not exceed max_batch_size {b.max_batch_size}"
        )


def _check_rate_limit(field: str, r: RateLimit) -> None:
    if r.requests_per_second < 0 or r.burst < 0 or r.requests_per_second != r.requests_per_second:
        raise errors.InvalidField(f"{field}: requests_per_second and burst must be >= 0")


def _check_targets(targets: list[Target]) -> None:
    seen: set[int] = set()
    for i, t in enumerate(targets):
        if t.version in seen:
            raise errors.InvalidField(f"targets[{i}]: version {t.version} is listed twice")
        seen.add(t.version)
        if not 0 <= t.weight <= 100:
            raise errors.InvalidField(f"targets[{i}]: weight must be 0..100, got {t.weight}")
        if t.mirror and t.weight != 0:
            raise errors.InvalidField(f"targets[{i}]: a mirror target must have weight 0, got {t.weight}")
    serving = [t for t in targets if not t.mirror]
    if targets and not serving:
        raise errors.InvalidField("a deployment with targets needs at least one non-mirror target")
    total = sum(t.weight for t in serving)
    if serving and total != 100:
        raise errors.InvalidField(f"weights of non-mirror targets must sum to 100, got {total}")
