"""Versions that reference an existing S3 object (``artifact_uri = s3://bucket/key``).

CreateModelVersion accepts ``s3://bucket/key`` only with an ``artifact_sha256`` (64 hex
characters) and only inside REGISTRY_ARTIFACT_S3_ALLOWED, a comma list of ``bucket`` (any key of
it) or ``bucket/prefix`` (keys starting with ``prefix/``); empty (the default) refuses every
``s3://`` reference. Each refusal is INVALID_ARGUMENT naming the rule, never a fact about the
object (the registry does not even look at it when the version is created).

The bytes are fetched **through the registry**: DownloadModelVersion streams the object, hashing
it as it goes, and the model server fetches an ``s3://`` version exactly like an uploaded one
(into its verified cache). Why not directly from the model server: the S3 credentials (the
REGISTRY_ARTIFACTS__S3__* endpoint and keys) then live in one service, and the allowed-bucket rule
is enforced where the reference was accepted. If the object's digest is not the version's
``artifact_sha256``, the stream ends with DATA_LOSS before its last chunk (a REST download is cut
short of its Content-Length) and the version turns FAILED with the reason
:data:`DIGEST_MISMATCH`, which names no size, digest nor key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from modelserve_common.artifact_store import S3ArtifactStore, S3StoreSettings
from modelserve_common.errors import DataLoss, InvalidArgument, NotFound

SCHEME = "s3://"
DIGEST_MISMATCH = "artifact digest mismatch: the S3 object is not the bytes the version names"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024
"""S3's own limit on a key."""


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def _refuse(uri: str, rule: str) -> InvalidArgument:
    shown = uri if len(uri) <= 200 else uri[:200] + "..."
    return InvalidArgument(f"artifact URI {shown!r} refused: {rule}")


def parse_allowed(setting: str) -> tuple[tuple[str, str], ...]:
    """REGISTRY_ARTIFACT_S3_ALLOWED as (bucket, prefix) pairs; a bad entry: ValueError."""
    out: list[tuple[str, str]] = []
    for raw in setting.split(","):
        entry = raw.strip().removeprefix(SCHEME).strip("/")
        if not entry:
            continue
        bucket, _, prefix = entry.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"REGISTRY_ARTIFACT_S3_ALLOWED: {bucket!r} is not an S3 bucket name")
        out.append((bucket, prefix + "/" if prefix else ""))
    return tuple(out)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``, or INVALID_ARGUMENT naming the rule."""
    rest = uri[len(SCHEME) :]
    bucket, _, key = rest.partition("/")
    if "?" in rest or "#" in rest or "\x00" in rest:
        raise _refuse(uri, "query, fragment or NUL")
    if not _BUCKET.fullmatch(bucket):
        raise _refuse(uri, "not an S3 bucket name")
    if not key or key.endswith("/") or len(key.encode()) > MAX_KEY_BYTES:
        raise _refuse(uri, f"an object key of 1 to {MAX_KEY_BYTES} bytes, not a folder, is required")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise _refuse(uri, "empty, '.' or '..' key segment")
    return bucket, key


def check_s3_reference(uri: str, sha256: str, allowed: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """(bucket, key) when ``uri`` may be a version's artifact; INVALID_ARGUMENT naming the rule."""
    bucket, key = parse_s3_uri(uri)
    if not _HEX64.fullmatch(sha256):
        raise _refuse(uri, "an s3:// artifact needs artifact_sha256 (64 lower-case hex characters)")
    if not allowed:
        raise _refuse(uri, "s3:// references are disabled (REGISTRY_ARTIFACT_S3_ALLOWED is empty)")
    if not any(bucket == b and key.startswith(p) for b, p in allowed):
        raise _refuse(uri, "not under a bucket or prefix of REGISTRY_ARTIFACT_S3_ALLOWED")
    return bucket, key


class S3References:
    """Reads referenced objects with the registry's S3 endpoint and credentials (one client per
    allowed bucket, made when first needed)."""

    def __init__(self, settings: S3StoreSettings, allowed: tuple[tuple[str, str], ...]) -> None:
        self._settings = settings
        self.allowed = allowed
        self._clients: dict[str, S3ArtifactStore] = {}

    def _client(self, bucket: str) -> S3ArtifactStore:
        if bucket not in self._clients:
            self._clients[bucket] = S3ArtifactStore(self._settings.model_copy(update={"bucket": bucket}))
        return self._clients[bucket]

    async def size(self, uri: str, sha256: str) -> int:
        """The referenced object's size (NOT_FOUND naming the store when it is missing)."""
        bucket, key = check_s3_reference(uri, sha256, self.allowed)
        client = self._client(bucket)
        size = await client.stat_key(key)
        if size is None:
            raise NotFound(f"{client.description}: referenced object not found")
        return size

    def read_verified(
        self, uri: str, sha256: str, on_mismatch: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[bytes]:
        """The object's chunks; after the last one, a digest other than ``sha256`` calls
        ``on_mismatch`` and raises DATA_LOSS (the client must drop what it received)."""
        bucket, key = check_s3_reference(uri, sha256, self.allowed)  # the rule may have narrowed
        return _verified(self._client(bucket).read_key(key, "referenced object"), sha256, on_mismatch)


async def _verified(
    chunks: AsyncIterator[bytes], sha256: str, on_mismatch: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    held: bytes | None = None  # the last chunk goes out only after the digest is checked
    async for chunk in chunks:
        digest.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if digest.hexdigest() != sha256:
        await on_mismatch()
        raise DataLoss(DIGEST_MISMATCH)
    if held is not None:
        yield held


def no_references() -> S3References:
    """A reader refusing every reference (no allowed bucket)."""
    return S3References(S3StoreSettings(), ())


__all__ = [
    "DIGEST_MISMATCH",
    "S3References",
    "check_s3_reference",
    "is_s3_uri",
    "no_references",
    "parse_allowed",
    "parse_s3_uri",
]
