"""Uploaded artifacts: UploadModelVersion (stream -> content-addressed blob -> version),
DownloadModelVersion, and the sweeper of blobs no version references.

An upload is checked before a byte is stored (the model is the caller's, the caller may write,
a code backend needs the tenant's code_execution_allowed, the version's fields are valid), then
streamed into the artifact store while it is hashed (modelserve_common.artifact_store): a digest or
size that does not match the client's, more than ``max_artifact_bytes`` or more than the tenant's
remaining quota stores nothing. The version is created, in one write transaction, only after the
blob is durable; that transaction also records the blob (``blobs``: one row per distinct sha256,
whatever the number of versions using it) with a fresh touch time, so the sweeper, which deletes
blobs that no version references and that were not touched for ``blob_grace_s``, cannot remove
bytes an upload is about to reference.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from modelserve_common.artifact_store import ArtifactStore, StoredBlob, parse_blob_uri
from modelserve_common.errors import Aborted, DeadlineExceeded, FailedPrecondition, ResourceExhausted
from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import ModelVersion
from modelserve_registry.s3_refs import DIGEST_MISMATCH, S3References, is_s3_uri, no_references
from modelserve_registry.signatures import fill_onnx_signature
from modelserve_registry.store import StoreTx, now_us
from modelserve_registry.upload_room import Reservation, UploadRoom
from modelserve_registry.validation import check_tensor_specs, check_version_input, require

log = structlog.get_logger(__name__)

UPLOADS = Counter(
    "modelserve_registry_uploads_total", "Versions created by UploadModelVersion, by tenant.", ["tenant"]
)
UPLOADED_BYTES = Counter(
    "modelserve_registry_uploaded_bytes_total",
    "Artifact bytes received by successful uploads, by tenant.",
    ["tenant"],
)

_SHA_PLACEHOLDER = "0" * 64


@dataclass(frozen=True)
class ArtifactLimits:
    max_artifact_bytes: int = 10 * 1024**3
    tenant_storage_quota_bytes: int = 0
    """0: no quota."""
    upload_idle_timeout_s: float = 60.0
    blob_grace_s: float = 3600.0
    max_signature_bytes: int = 512 * 1024**2
    """Largest ONNX file whose signature is read at upload (larger: specs are left as given)."""
    max_concurrent_signature_reads: int = 2
    """Uploaded ONNX files whose signature is read at the same time (each holds the file in memory)."""


@dataclass(frozen=True)
class Download:
    version: ModelVersion
    chunks: AsyncIterator[bytes]

    @property
    def file_name(self) -> str:
        ext = {"tar": ".tar", "zip": ".zip"}.get(self.version.artifact_format, "")
        base = "model.onnx" if self.version.backend == "onnx" and not ext else "model"
        return base + ext


async def _idle_bounded(chunks: AsyncIterator[bytes], idle_s: float) -> AsyncIterator[bytes]:
    """The chunks, but DEADLINE_EXCEEDED when the client sends nothing for ``idle_s``."""
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"upload idle for more than {idle_s:g} s (REGISTRY_UPLOAD_IDLE_TIMEOUT_S)"
            ) from None
        yield chunk


class ArtifactOps(ServiceCore):
    _artifacts: ArtifactStore | None = None
    _artifact_limits: ArtifactLimits = ArtifactLimits()
    _s3_refs: S3References = no_references()

    _upload_room: UploadRoom
    _signature_reads: asyncio.Semaphore

    def use_artifact_store(
        self, store: ArtifactStore, limits: ArtifactLimits, references: S3References | None = None
    ) -> None:
        self._artifacts = store
        self._s3_refs = references or no_references()
        self._artifact_limits = limits
        self._upload_room = UploadRoom()
        self._signature_reads = asyncio.Semaphore(limits.max_concurrent_signature_reads)

    def _artifact_store(self) -> ArtifactStore:
        if self._artifacts is None:
            raise FailedPrecondition("this registry has no artifact store configured")
        return self._artifacts

    async def upload_version(
        self,
        caller: Caller,
        model_name: str,
        v: ModelVersion,
        size_bytes: int,
        chunks: AsyncIterator[bytes],
    ) -> ModelVersion:
        require(caller, "write")
        store = self._artifact_store()
        limits = self._artifact_limits
        expected_sha = v.artifact_sha256
        if size_bytes < 0:
            raise errors.InvalidField(f"size_bytes must be >= 0 (0: unknown), got {size_bytes}")
        if size_bytes > limits.max_artifact_bytes:
            raise ResourceExhausted(
                f"artifact of {size_bytes} bytes exceeds the limit of {limits.max_artifact_bytes} "
                "bytes (REGISTRY_MAX_ARTIFACT_BYTES)"
            )
        v.artifact_sha256 = expected_sha or _SHA_PLACEHOLDER  # the digest is checked by the store
        check_version_input(v, self._limits.max_tags, self._limits.max_text_bytes)
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            await self._check_code_permission(tx, caller, model, v.backend)
            quota = await self._quota(tx, model.tenant)
        async with self._reserve(model.tenant, quota, size_bytes) as held:
            try:
                blob = await store.put(
                    _idle_bounded(chunks, limits.upload_idle_timeout_s),
                    max_bytes=held.room,
                    expected_sha256=expected_sha,
                    expected_size=size_bytes or -1,
                )
            except ResourceExhausted:
                if quota and held.room < limits.max_artifact_bytes:
                    self._check_quota(model.tenant, held.used, held.room + 1, quota, at_least=True)
                raise
            async with self._store.transaction(write=True) as tx:  # the sweeper and the quota know it
                await tx.touch_blob(blob.sha256, blob.size, now_us(), model.tenant)
        await self._fill_signature(store, v, blob)
        return await self._create_uploaded(caller, model_name, v, blob)

    @property
    def upload_idle_timeout_s(self) -> float:
        return self._artifact_limits.upload_idle_timeout_s

    def _reserve(self, tenant: str, quota: int, size_bytes: int) -> AbstractAsyncContextManager[Reservation]:
        """The room this upload may fill: the artifact limit, within the tenant's quota less its
        stored blobs (referenced, or uploaded and not yet swept) and the room other uploads of
        the tenant hold; ``size_bytes`` (when given) is all it holds."""
        limit = self._artifact_limits.max_artifact_bytes

        async def stored() -> int:
            if not quota:
                return 0
            async with self._store.transaction(write=False) as tx:
                return await tx.tenant_storage_used(tenant)

        def room(used: int) -> int:
            wanted = size_bytes or limit
            if not quota:
                return wanted
            self._check_quota(tenant, used, 0, quota)
            return min(wanted, quota - used)

        return self._upload_room.reserve(tenant, stored, room)

    async def _quota(self, tx: StoreTx, tenant: str) -> int:
        """The tenant's storage quota: its own (Tenant.storage_quota_bytes), else the registry's
        REGISTRY_TENANT_STORAGE_QUOTA_BYTES; 0 = none."""
        owner = await tx.get_tenant(tenant)
        own = owner.storage_quota_bytes if owner is not None else 0
        return own or self._artifact_limits.tenant_storage_quota_bytes

    @staticmethod
    def _check_quota(tenant: str, used: int, adding: int, quota: int, at_least: bool = False) -> None:
        if used + adding > quota or (adding == 0 and used >= quota):
            more = "at least " if at_least else ""
            raise ResourceExhausted(
                f"tenant {tenant!r} storage quota exceeded: {used} bytes used of {quota}, "
                f"upload needs {more}{adding} more"
            )

    async def _fill_signature(self, store: ArtifactStore, v: ModelVersion, blob: StoredBlob) -> None:
        if v.backend != "onnx" or v.artifact_format or blob.size > self._artifact_limits.max_signature_bytes:
            return
        async with self._signature_reads:  # each read holds the whole file in memory
            data = b"".join([chunk async for chunk in store.read(blob.sha256)])
            await asyncio.to_thread(fill_onnx_signature, v, data)
        check_tensor_specs("inputs", v.inputs)  # names and shapes read from the file are input too
        check_tensor_specs("outputs", v.outputs)

    async def _create_uploaded(
        self, caller: Caller, model_name: str, v: ModelVersion, blob: StoredBlob
    ) -> ModelVersion:
        store = self._artifact_store()
        async with self._store.transaction(write=True) as tx:
            model = await self._model(tx, caller, model_name, write=True)
            await self._check_code_permission(tx, caller, model, v.backend)
            quota = await self._quota(tx, model.tenant)
            if quota and not await tx.tenant_references_blob(model.tenant, blob.sha256):
                used = await tx.tenant_storage_used(model.tenant, excluding=blob.sha256)
                self._check_quota(model.tenant, used, blob.size, quota)
            now = now_us()
            await tx.touch_blob(blob.sha256, blob.size, now, model.tenant)
            if await store.stat(blob.sha256) != blob.size:  # swept between put and this lock
                raise Aborted("the uploaded artifact was removed concurrently; upload it again")
            number = await tx.next_version_number(model.name)
            v = dataclasses.replace(
                v,
                model=model.name,
                version=number,
                create_time=now,
                update_time=now,
                aliases=[],
                artifact_uri=blob.uri,
                artifact_sha256=blob.sha256,
                artifact_size_bytes=blob.size,
            )
            await tx.record("CREATED", model.tenant, model.name, v)
            await tx.insert_version(v)
        self._notify()
        UPLOADS.labels(model.tenant).inc()
        UPLOADED_BYTES.labels(model.tenant).inc(blob.size)
        log.info("model_version.uploaded", model=v.model, version=v.version, size=blob.size)
        return v

    async def download_version(self, caller: Caller, model_name: str, ref: str) -> Download:
        require(caller, "read")
        store = self._artifact_store()
        async with self._store.transaction(write=False) as tx:
            model = await self._model(tx, caller, model_name)
            if not caller.can_see(model.tenant):  # shared means usable, not downloadable
                raise errors.ModelNotFound(f"model {model_name!r} not found")
            version = await self._version(tx, model, ref)
        if is_s3_uri(version.artifact_uri):
            if not version.artifact_size_bytes:  # the REST download's Content-Length
                version.artifact_size_bytes = await self._s3_refs.size(
                    version.artifact_uri, version.artifact_sha256
                )
            return Download(version=version, chunks=self._read_reference(model.name, version))
        digest = parse_blob_uri(version.artifact_uri)
        if digest is None:
            raise FailedPrecondition(
                f"version {version.version} of model {model.name!r} references "
                f"{version.artifact_uri.split(':', 1)[0]}: artifacts, not an uploaded blob"
            )
        if not version.artifact_size_bytes:
            version.artifact_size_bytes = await store.stat(digest) or 0
        return Download(version=version, chunks=store.read(digest))

    def _read_reference(self, model: str, version: ModelVersion) -> AsyncIterator[bytes]:
        """The s3:// object, verified; a digest mismatch turns the version FAILED."""
        number = version.version

        async def fail() -> None:
            async with self._store.transaction(write=True) as tx:
                current = await tx.get_version(model, number)
                if current is None or current.status == "FAILED":
                    return
                current.status, current.status_message = "FAILED", DIGEST_MISMATCH
                current.update_time = now_us()
                owner = await tx.get_model(model)
                await tx.record("UPDATED", owner.tenant if owner else "", model, current)
                await tx.update_version(current)
            self._notify()
            log.warning("model_version.digest_mismatch", model=model, version=number)

        return self._s3_refs.read_verified(version.artifact_uri, version.artifact_sha256, fail)

    async def sweep_blobs(self, limit: int = 1000) -> int:
        """Deletes blobs no version references and untouched for blob_grace_s (store bytes first,
        inside the write transaction, so an upload that touches the blob waits for it)."""
        store = self._artifact_store()
        before = now_us() - int(self._artifact_limits.blob_grace_s * 1_000_000)
        removed = 0
        async with self._store.transaction(write=True) as tx:
            for sha in await tx.unreferenced_blobs(before, limit):
                await store.delete(sha)
                await tx.delete_blob(sha)
                removed += 1
        if removed:
            log.info("blobs.swept", count=removed)
        return removed
