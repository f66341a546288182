"""What every artifact store shares: settings, blob addresses, the :class:`ArtifactStore`
interface and the streaming verifier (size limit, expected size and sha256)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

from modelserve_common.errors import InvalidArgument, ResourceExhausted

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
        default=8 * 1024 * 1024,
        ge=MIN_S3_PART_BYTES,
        le=5 * 1024 * 1024 * 1024,
        description="multipart part size (S3's minimum is 5 MiB)",
    )
    parts_in_flight: int = Field(
        default=2,
        ge=1,
        le=16,
        description="parts of one upload sent at the same time; an upload holds at most "
        "(parts_in_flight + 1) x part_size_bytes in memory (the parts being sent and the next "
        "one filling up)",
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


class Verifier:
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
