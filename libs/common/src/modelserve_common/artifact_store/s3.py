"""The S3 store: any S3-compatible object store (AWS S3, MinIO, Ceph, GCS's S3 interoperability),
through **boto3 in worker threads** (``asyncio.to_thread``).

Why boto3: it is the maintained reference client (signing, retries, the standard credential chain:
settings, the ``AWS_*`` variables, shared config, IRSA/workload identity), it speaks to moto's
server in the tests with real HTTP and signatures, and its explicit multipart calls let us stream an
upload of unknown length part by part with bounded memory. Each blocking call runs in a thread so the
event loop never waits on the network.

An upload is a multipart upload whose parts (``part_size_bytes``) are sent while the stream is still
read, at most ``parts_in_flight`` at a time (the stream is not read further while that many are
being sent), from ``parts_in_flight + 1`` part buffers reused for the whole upload (each byte is
copied once, into a buffer, which is the request body as it is): an upload holds at most
``(parts_in_flight + 1) x part_size_bytes``. It is completed
only after the whole stream has been read and its digest and size verified; until then nothing is
visible (an incomplete multipart upload is not an object). Where it goes:

- the client declared the sha256: straight to the content address ``<prefix>sha256/<hex>`` (no copy
  afterwards); if that blob is already stored, the stream is only verified and nothing is sent;
- otherwise: to a temporary key ``<prefix>tmp/<start time>-<random>``, copied to the content address
  once the digest is known, then deleted;
- a stream smaller than one part: one ``PutObject`` to the content address after verification.

A failed upload is aborted. What an abort could not reach (the registry crashed, the store went
away) is removed by :meth:`S3ArtifactStore.sweep_temporary`: multipart uploads under the store's
prefix and temporary objects started more than the timeout ago (the start time of a temporary key
is in its name; for a content-address upload it is the ``Initiated`` time the store reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from modelserve_common.artifact_store.base import (
    READ_CHUNK_BYTES,
    S3StoreSettings,
    StoredBlob,
    Verifier,
    check_digest,
)
from modelserve_common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)

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
        self._active: set[str] = set()
        """Upload ids this process is sending now (never swept from here)."""
        where = f" at {settings.endpoint_url}" if settings.endpoint_url else ""
        self.description = f"S3 store s3://{settings.bucket}/{settings.prefix}{where}"
        config = Config(
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            s3={"addressing_style": settings.addressing_style},
            signature_version="s3v4",
            # the threads of every upload's parts in flight, plus reads, share one client
            max_pool_connections=max(10, settings.parts_in_flight * 4),
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
        verifier = Verifier(max_bytes, expected_size, expected_sha256)
        if expected_sha256 and await self.stat(expected_sha256) is not None:
            async for chunk in chunks:  # already stored: verify the stream, send nothing
                verifier.feed(chunk)
            return verifier.finish()
        part_size = self._settings.part_size_bytes
        key = self.key(expected_sha256) if expected_sha256 else self._temporary_key()
        upload = _MultipartUpload(self, key)
        try:
            part, filled = upload.buffer(), 0
            async for chunk in chunks:
                verifier.feed(chunk)
                view = memoryview(chunk)
                while view:  # copied once, into the part buffer
                    n = min(len(view), part_size - filled)
                    part[filled : filled + n] = view[:n]
                    filled += n
                    view = view[n:]
                    if filled == part_size:
                        await upload.send(part, filled)
                        part, filled = upload.buffer(), 0
            blob = verifier.finish()
            if not upload.started:  # smaller than one part: one request, straight to its address
                await self._call(
                    "uploading",
                    "put_object",
                    Bucket=self._bucket,
                    Key=self.key(blob.sha256),
                    Body=_trimmed(part, filled),
                )
                return blob
            if filled:
                await upload.send(part, filled)
            await upload.complete()
        finally:
            await upload.close()
        if key != self.key(blob.sha256):
            try:
                await self._promote(key, blob)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=key)
        return blob

    def _temporary_key(self) -> str:
        # the start time is in the name: some S3 implementations report no real Initiated time
        return f"{self._prefix}tmp/{int(time.time())}-{uuid.uuid4().hex}"

    async def _promote(self, tmp_key: str, blob: StoredBlob) -> None:
        """Copy the verified temporary object to its content address (managed copy: multipart
        for large objects)."""
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
        """Abort the multipart uploads under the store's prefix and delete the temporary objects
        started more than ``older_than_s`` ago (uploads this process is sending are left alone);
        how many."""
        cutoff = time.time() - older_than_s
        tmp = f"{self._prefix}tmp/"
        removed = 0
        for item in await self._list("list_objects_v2", "Contents", Prefix=tmp):
            if _started(item["Key"], tmp, item["LastModified"].timestamp()) < cutoff:
                await self._call("sweeping", "delete_object", Bucket=self._bucket, Key=item["Key"])
                removed += 1
        for up in await self._list("list_multipart_uploads", "Uploads", Prefix=self._prefix):
            if up["UploadId"] in self._active:
                continue
            if _started(up["Key"], tmp, up["Initiated"].timestamp()) < cutoff:
                await self._call(
                    "sweeping",
                    "abort_multipart_upload",
                    Bucket=self._bucket,
                    Key=up["Key"],
                    UploadId=up["UploadId"],
                )
                removed += 1
        return removed

    async def _list(self, operation: str, field: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every entry of a paginated listing of this store's bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        def listing() -> list[dict[str, Any]]:
            pages = self._client.get_paginator(operation).paginate(Bucket=self._bucket, **kwargs)
            return [item for page in pages for item in page.get(field, [])]

        try:
            return await asyncio.to_thread(listing)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "sweeping") from None


class _MultipartUpload:
    """One multipart upload: parts sent in worker threads, at most ``parts_in_flight`` at once,
    from at most ``parts_in_flight + 1`` part buffers reused for the whole upload."""

    def __init__(self, store: S3ArtifactStore, key: str) -> None:
        self._store = store
        self._key = key
        self._limit = store._settings.parts_in_flight
        self._part_size = store._settings.part_size_bytes
        self._upload_id = ""
        self._parts: dict[int, str] = {}
        self._next = 1
        self._sending: set[asyncio.Task[None]] = set()
        self._free: list[bytearray] = []
        self._completed = False

    @property
    def started(self) -> bool:
        return bool(self._upload_id)

    def buffer(self) -> bytearray:
        """A part buffer to fill (after :meth:`send`, at most ``parts_in_flight`` are in use)."""
        while self._free:
            part = self._free.pop()
            if len(part) == self._part_size:  # not a trimmed last part
                return part
        return bytearray(self._part_size)

    async def send(self, part: bytearray, size: int) -> None:
        """Start sending ``part[:size]`` as the next part (the buffer is the upload's until that
        is done); waits while ``parts_in_flight`` parts are being sent. Raises the error of a
        part that failed."""
        store = self._store
        if not self._upload_id:
            created = await store._call(
                "starting an upload",
                "create_multipart_upload",
                Bucket=store._bucket,
                Key=self._key,
            )
            self._upload_id = created["UploadId"]
            store._active.add(self._upload_id)
        while len(self._sending) >= self._limit:
            done, _ = await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
            self._sending -= done
            for task in done:
                task.result()
        number, self._next = self._next, self._next + 1
        self._sending.add(asyncio.create_task(self._send_part(number, part, size)))

    async def _send_part(self, number: int, part: bytearray, size: int) -> None:
        store = self._store
        try:
            answer = await store._call(
                f"uploading part {number}",
                "upload_part",
                Bucket=store._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=_trimmed(part, size),
            )
        finally:
            self._free.append(part)
        self._parts[number] = answer["ETag"]

    async def complete(self) -> None:
        if self._sending:
            # asyncio.wait, not awaiting each task: a failed part must not leave the others
            # untracked (close() waits for them before the abort; a part still being sent
            # after the abort could leave its storage behind, unlisted), and cancelling this
            # call must not cancel them (their threads would go on sending without us)
            await asyncio.wait(self._sending)
            for task in self._sending:
                task.result()  # the first failure
            self._sending.clear()
        store = self._store
        await store._call(
            "completing an upload",
            "complete_multipart_upload",
            Bucket=store._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in sorted(self._parts.items())]},
        )
        self._completed = True

    async def close(self) -> None:
        """Wait for the parts still being sent (a thread cannot be stopped), then, after a
        failure, abort the upload (best effort: the sweeper removes what this cannot reach)."""
        if self._sending:
            await asyncio.wait(self._sending)  # (not gather: a cancelled close must not cancel them)
            for task in self._sending:
                if not task.cancelled():
                    task.exception()  # retrieved: the failure that matters was raised already
            self._sending.clear()
        self._free.clear()
        store = self._store
        if self._upload_id and not self._completed:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    store._client.abort_multipart_upload,
                    Bucket=store._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                )
        store._active.discard(self._upload_id)


def _trimmed(part: bytearray, size: int) -> bytearray:
    """``part[:size]`` without a copy where possible. A bytearray body is sent as it is: botocore
    hashes it and urllib3 writes it to the socket whole (a ``bytes`` body would do the same, but
    a fresh ``bytes`` per part is what the reused buffers avoid; a file-like body would cost an
    ``Expect: 100-continue`` round trip and block-sized reads)."""
    if size < len(part):
        del part[size:]  # the last part only: nothing else refers to the buffer
    return part


def _started(key: str, tmp: str, reported: float) -> float:
    """When an upload started: the time in the name of a temporary key (under ``tmp``), else
    what the store reports."""
    stamp = key.removeprefix(tmp).split("-", 1)[0]
    return float(stamp) if key.startswith(tmp) and stamp.isdigit() else reported
