"""Content-addressed artifact stores: where uploaded model bytes live.

One interface, :class:`ArtifactStore` (:mod:`.base`), two backends: :class:`LocalArtifactStore`
(a folder, :mod:`.local`) and :class:`S3ArtifactStore` (any S3-compatible object store, :mod:`.s3`).

Blobs are addressed by the lowercase hex sha256 of their bytes: the same bytes are one blob. An
upload is visible only once its bytes are durable and verified; what a crash leaves (a temporary
file, an incomplete multipart upload, a temporary key) is removed by ``sweep_temporary`` once older
than ``temporary_timeout_s``. Errors are :mod:`modelserve_common.errors` classes whose message names
the store, never a botocore traceback: a missing bucket is FAILED_PRECONDITION, refused credentials
PERMISSION_DENIED, an unreachable store UNAVAILABLE, a digest or size that does not match
INVALID_ARGUMENT, more bytes than allowed RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelserve_common.artifact_store.base import (
    BLOB_URI_PREFIX,
    MIN_S3_PART_BYTES,
    READ_CHUNK_BYTES,
    SHA256_HEX,
    ArtifactStore,
    ArtifactStoreSettings,
    S3StoreSettings,
    StoredBlob,
    Verifier,
    blob_uri,
    check_digest,
    parse_blob_uri,
)
from modelserve_common.artifact_store.local import LocalArtifactStore
from modelserve_common.artifact_store.s3 import S3ArtifactStore

__all__ = [
    "BLOB_URI_PREFIX",
    "MIN_S3_PART_BYTES",
    "READ_CHUNK_BYTES",
    "SHA256_HEX",
    "ArtifactStore",
    "ArtifactStoreSettings",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "S3StoreSettings",
    "StoredBlob",
    "Verifier",
    "artifact_store",
    "blob_uri",
    "check_digest",
    "parse_blob_uri",
]


def artifact_store(settings: ArtifactStoreSettings, data_dir: str | os.PathLike[str]) -> ArtifactStore:
    """The store the settings describe (local default: ``<data_dir>/blobs``)."""
    if settings.kind == "s3":
        return S3ArtifactStore(settings.s3)
    return LocalArtifactStore(settings.local_dir or Path(data_dir) / "blobs")
