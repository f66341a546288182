"""Content-addressed artifact stores: where uploaded model bytes live.

One interface, :class:`ArtifactStore`, two backends:

- :class:`LocalArtifactStore`: a folder (by default under the service's data directory). An upload
  is written to ``tmp/<random>`` while it is hashed, ``fsync``-ed, then promoted by an atomic
  ``rename`` to ``sha256/<aa>/<hex>``. A reader never sees a half-written blob; a crash leaves only
  a temporary file, which :meth:`ArtifactStore.sweep_temporary` deletes once it is older than the
  timeout.
- :class:`S3ArtifactStore`: any S3-compatible object store (AWS S3, MinIO, Ceph, GCS's S3
  interoperability), through **boto3 in worker threads** (``asyncio.to_thread``). Why boto3: it is
  the maintained reference client (signing, retries, the standard credential chain: settings, the
  ``AWS_*`` variables, shared config, IRSA/workload identity), it speaks to moto's server in the
  tests with real HTTP and signatures, and its explicit multipart calls let us stream an upload of
  unknown length part by part with memory bounded by one part. Each blocking call runs in a thread
  so the event loop never waits on the network. An upload goes to a temporary key
  (``<prefix>tmp/<random>``) as a multipart upload that is completed only after the whole stream has
  been read and its digest and size verified; it is then copied to ``<prefix>sha256/<hex>`` and the
  temporary key deleted. A failed upload is aborted (nothing becomes visible); what an abort could
  not reach (the store went away) is removed by :meth:`ArtifactStore.sweep_temporary`.

Blobs are addressed by the lowercase hex sha256 of their bytes: the same bytes are one blob.
Errors are :mod:`modelserve_common.errors` classes whose message names the store, never a botocore
traceback: a missing bucket is FAILED_PRECONDITION, refused credentials PERMISSION_DENIED, an
unreachable store UNAVAILABLE, a digest or size that does not match INVALID_ARGUMENT, more bytes
than allowed RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

from modelserve_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
BLOB_URI_PREFIX = "blob:sha256:"
READ_CHUNK_BYTES = 1024 * 1024
"""Size of the chunks :meth:`ArtifactStore.read` yields."""
MIN_S3_PART_BYTES = 5 * 1024 * 1024
"""S3's smallest multipart part (all but the last)."""


class S3StoreSettings(BaseModel):
    """Where an :class:`S3ArtifactStore` keeps blobs. Credentials left empty come from the standard
    chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, shared config,
    IRSA/workload identity)."""

    bucket: str = ""
    prefix: str = Field(default="modelserve/", description="key prefix of every object")
    endpoint_url: str = Field(default="", description="empty = AWS; else MinIO/Ceph/GCS endpoint")
    region: str = Field(default="", description="empty = the standard AWS_REGION chain")
    access_key_id: str = ""
    secret_access_key: SecretStr = SecretStr("")
    session_token: SecretStr = SecretStr("")
    part_size_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=MIN_S3_PART_BYTES,
        le=5 * 1024 * 1024 * 1024,
        description="multipart part size; an upload holds at most one part in memory",
    )
    max_attempts: int = Field(default=3, ge=1, le=20, description="tries per S3 request")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"


class ArtifactStoreSettings(BaseModel):
    """The artifact store a service uses (nested setting: ``<SERVICE>_ARTIFACTS__KIND`` ...)."""

    kind: Literal["local", "s3"] = Field(default="local", description="local folder or S3")
    local_dir: str = Field(default="", description="local store folder; empty = <data dir>/blobs")
    s3: S3StoreSettings = Field(default_factory=S3StoreSettings)
    temporary_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 86400,
        description="an upload's temporary file/key older than this is swept",
    )


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return blob_uri(self.sha256)


def blob_uri(sha256: str) -> str:
    return BLOB_URI_PREFIX + sha256


def parse_blob_uri(uri: str) -> str | None:
    """The digest of a ``blob:sha256:<hex>`` URI, or None when ``uri`` is not one."""
    if not uri.startswith(BLOB_URI_PREFIX):
        return None
    digest = uri.removeprefix(BLOB_URI_PREFIX)
    if not SHA256_HEX.match(digest):
        raise InvalidArgument(f"blob URI {uri[:120]!r} refused: expected blob:sha256:<64 hex>")
    return digest


def check_digest(sha256: str, what: str = "sha256") -> str:
    if not SHA256_HEX.match(sha256):
        raise InvalidArgument(f"{what} must be 64 lowercase hex characters, got {sha256[:80]!r}")
    return sha256


class ArtifactStore(Protocol):
    """A content-addressed blob store."""

    description: str
    """Names the store in every error message (``local store /data/blobs``, ``S3 store s3://b/p``)."""

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        expected_sha256: str = "",
        expected_size: int = -1,
    ) -> StoredBlob:
        """Store the stream; the blob is durable and visible only when this returns. Nothing is
        left visible when it raises (digest/size mismatch, more than ``max_bytes``, failure)."""
        ...

    async def stat(self, sha256: str) -> int | None:
        """The blob's size, or None when it is not stored."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; NotFound when it is not stored."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove the blob (no error when it is already gone)."""
        ...

    async def sweep_temporary(self, older_than_s: float) -> int:
        """Delete uploads' temporary files/keys older than ``older_than_s``; how many."""
        ...


class _Verifier:
    """Counts and hashes a stream, enforcing the size limit as it goes."""

    def __init__(self, max_bytes: int, expected_size: int, expected_sha256: str) -> None:
        if expected_sha256:
            check_digest(expected_sha256, "expected sha256")
        self.hash = hashlib.sha256()
        self.size = 0
        self._limit = max_bytes
        self._expected_size = expected_size
        self._expected_sha256 = expected_sha256

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise ResourceExhausted(
                f"artifact larger than the limit of {self._limit} bytes "
                f"(more than {self.size - len(chunk)} bytes received)"
            )
        if 0 <= self._expected_size < self.size:
            raise InvalidArgument(
                f"artifact size mismatch: declared {self._expected_size} bytes, received at least {self.size}"
            )
        self.hash.update(chunk)

    def finish(self) -> StoredBlob:
        expected_sha256 = self._expected_sha256
        digest = self.hash.hexdigest()
        if self._expected_size >= 0 and self.size != self._expected_size:
            raise InvalidArgument(
                f"artifact size mismatch: declared {self._expected_size} bytes, received {self.size}"
            )
        if expected_sha256 and expected_sha256 != digest:
            raise InvalidArgument(
                f"artifact sha256 mismatch: declared {expected_sha256}, received bytes hash to {digest}"
            )
        return StoredBlob(sha256=digest, size=self.size)


# --- local filesystem -------------------------------------------------------------------------


class LocalArtifactStore:
    """Blobs as files under ``root``: ``sha256/<aa>/<hex>``; uploads in ``tmp/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.description = f"local store {self.root}"
        self._tmp = self.root / "tmp"
        self._blobs = self.root / "sha256"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_digest(sha256)
        return self._blobs / sha256[:2] / sha256

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        expected_sha256: str = "",
        expected_size: int = -1,
    ) -> StoredBlob:
        verifier = _Verifier(max_bytes, expected_size, expected_sha256)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        promoted = False
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    verifier.feed(chunk)
                    await asyncio.to_thread(out.write, chunk)
                blob = verifier.finish()
                await asyncio.to_thread(_flush_and_sync, out)
            final = self.path(blob.sha256)
            await asyncio.to_thread(_promote, tmp, final)
            promoted = True
            return blob
        except OSError as exc:
            raise Unavailable(f"{self.description}: cannot write the artifact: {exc.strerror}") from exc
        finally:
            if not promoted:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    async def stat(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path(sha256).open, "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.description}: blob sha256:{sha256} not found") from None
        with handle:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
                yield chunk

    async def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()

    async def sweep_temporary(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed


def _flush_and_sync(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())


def _promote(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)  # atomic; the same bytes already there are simply replaced
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- S3 ---------------------------------------------------------------------------------------

_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
    "403",
}
_MISSING_BUCKET = {"NoSuchBucket"}


class S3ArtifactStore:
    """Blobs as objects ``<prefix>sha256/<hex>`` in one bucket (boto3 in worker threads)."""

    def __init__(self, settings: S3StoreSettings) -> None:
        if not settings.bucket:
            raise FailedPrecondition("S3 artifact store: no bucket configured")
        import boto3  # only when S3 is configured
        from botocore.config import Config

        self._settings = settings
        self._bucket = settings.bucket
        self._prefix = settings.prefix
        where = f" at {settings.endpoint_url}" if settings.endpoint_url else ""
        self.description = f"S3 store s3://{settings.bucket}/{settings.prefix}{where}"
        config = Config(
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            s3={"addressing_style": settings.addressing_style},
            signature_version="s3v4",
        )
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region or None,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key.get_secret_value() or None,
            aws_session_token=settings.session_token.get_secret_value() or None,
            config=config,
        )

    def key(self, sha256: str) -> str:
        return f"{self._prefix}sha256/{check_digest(sha256)}"

    def _error(self, exc: BaseException, doing: str) -> ServiceError:
        """A botocore failure as a ServiceError naming the store (no traceback, no secrets)."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        where = f"{self.description}: {doing}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _MISSING_BUCKET:
                return FailedPrecondition(f"{where}: bucket {self._bucket!r} does not exist")
            if code in _DENIED or status == 403:
                return PermissionDenied(f"{where}: credentials refused ({code or status})")
            if code in {"NoSuchKey", "404", "NotFound"}:
                return NotFound(f"{where}: object not found")
            if isinstance(status, int) and status >= 500:
                return Unavailable(f"{where}: the store answered {status} {code}")
            return FailedPrecondition(f"{where}: the store refused the request ({code or status})")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return PermissionDenied(f"{where}: no credentials configured")
        return Unavailable(f"{where}: store unreachable ({type(exc).__name__})")

    async def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(getattr(self._client, method), **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, doing) from None

    async def check(self) -> None:
        """Reach the bucket once (start-up check)."""
        try:
            await self._call("checking the bucket", "head_bucket", Bucket=self._bucket)
        except NotFound:  # HEAD answers carry no error code: a bare 404 is the missing bucket
            raise FailedPrecondition(
                f"{self.description}: checking the bucket: bucket {self._bucket!r} does not exist"
            ) from None

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        expected_sha256: str = "",
        expected_size: int = -1,
    ) -> StoredBlob:
        verifier = _Verifier(max_bytes, expected_size, expected_sha256)
        # the start time is in the name: some S3 implementations report no real Initiated time
        tmp_key = f"{self._prefix}tmp/{int(time.time())}-{uuid.uuid4().hex}"
        part_size = self._settings.part_size_bytes
        buffer = bytearray()
        upload_id = ""
        parts: list[dict[str, Any]] = []
        completed = False
        try:
            async for chunk in chunks:
                verifier.feed(chunk)
                buffer += chunk
                while len(buffer) >= part_size:
                    if not upload_id:
                        created = await self._call(
                            "starting an upload",
                            "create_multipart_upload",
                            Bucket=self._bucket,
                            Key=tmp_key,
                        )
                        upload_id = created["UploadId"]
                    body = bytes(buffer[:part_size])
                    del buffer[:part_size]
                    parts.append(await self._upload_part(tmp_key, upload_id, len(parts) + 1, body))
            blob = verifier.finish()
            if upload_id:
                if buffer or not parts:
                    parts.append(await self._upload_part(tmp_key, upload_id, len(parts) + 1, bytes(buffer)))
                buffer.clear()
                await self._call(
                    "completing an upload",
                    "complete_multipart_upload",
                    Bucket=self._bucket,
                    Key=tmp_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            else:
                await self._call(
                    "uploading",
                    "put_object",
                    Bucket=self._bucket,
                    Key=tmp_key,
                    Body=bytes(buffer),
                )
            completed = True
            await self._promote(tmp_key, blob)
            return blob
        finally:
            if upload_id and not completed:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(
                        self._client.abort_multipart_upload,
                        Bucket=self._bucket,
                        Key=tmp_key,
                        UploadId=upload_id,
                    )
            if completed:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=tmp_key)

    async def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = await self._call(
            f"uploading part {number}",
            "upload_part",
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def _promote(self, tmp_key: str, blob: StoredBlob) -> None:
        """Copy the verified temporary object to its content address (managed copy: multipart
        for objects over 5 GiB)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(
                self._client.copy,
                {"Bucket": self._bucket, "Key": tmp_key},
                self._bucket,
                self.key(blob.sha256),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "storing the artifact") from None

    async def stat(self, sha256: str) -> int | None:
        return await self.stat_key(self.key(sha256))

    async def stat_key(self, key: str) -> int | None:
        """The size of the object ``key`` of this store's bucket (None: missing)."""
        try:
            head = await self._call("reading a blob", "head_object", Bucket=self._bucket, Key=key)
        except NotFound:
            return None
        return int(head["ContentLength"])

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        return self.read_key(self.key(sha256), f"blob sha256:{sha256}")

    async def read_key(self, key: str, what: str) -> AsyncIterator[bytes]:
        """The object ``key`` of this store's bucket in chunks (a missing one: NotFound naming
        ``what``); also how the registry reads a version's ``s3://`` reference."""
        try:
            answer = await self._call("reading a blob", "get_object", Bucket=self._bucket, Key=key)
        except NotFound:
            raise NotFound(f"{self.description}: {what} not found") from None
        body = answer["Body"]
        from botocore.exceptions import BotoCoreError

        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK_BYTES):
                yield chunk
        except BotoCoreError as exc:
            raise self._error(exc, "reading a blob") from None
        finally:
            body.close()

    async def delete(self, sha256: str) -> None:
        await self._call("deleting a blob", "delete_object", Bucket=self._bucket, Key=self.key(sha256))

    async def sweep_temporary(self, older_than_s: float) -> int:
        """Delete temporary objects and abort multipart uploads started more than
        ``older_than_s`` ago (at most 1000 of each per sweep)."""
        cutoff = time.time() - older_than_s
        removed = 0
        listed = await self._call(
            "sweeping", "list_objects_v2", Bucket=self._bucket, Prefix=f"{self._prefix}tmp/"
        )
        for item in listed.get("Contents", []):
            if item["LastModified"].timestamp() < cutoff:
                await self._call("sweeping", "delete_object", Bucket=self._bucket, Key=item["Key"])
                removed += 1
        uploads = await self._call(
            "sweeping", "list_multipart_uploads", Bucket=self._bucket, Prefix=f"{self._prefix}tmp/"
        )
        for up in uploads.get("Uploads", []):
            if _started(up["Key"], up["Initiated"].timestamp()) < cutoff:
                await self._call(
                    "sweeping",
                    "abort_multipart_upload",
                    Bucket=self._bucket,
                    Key=up["Key"],
                    UploadId=up["UploadId"],
                )
                removed += 1
        return removed


def _started(key: str, reported: float) -> float:
    """When a temporary key's upload started: the time in its name, else what the store says."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    return float(stamp) if stamp.isdigit() else reported


def artifact_store(settings: ArtifactStoreSettings, data_dir: str | os.PathLike[str]) -> ArtifactStore:
    """The store the settings describe (local default: ``<data_dir>/blobs``)."""
    if settings.kind == "s3":
        return S3ArtifactStore(settings.s3)
    return LocalArtifactStore(settings.local_dir or Path(data_dir) / "blobs")
