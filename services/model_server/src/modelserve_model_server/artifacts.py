"""Registry artifacts: fetch a version's artifact, verify its sha256, and turn the version's record
into a model config.

An uploaded artifact (``blob:sha256:<hex>``, see the registry's UploadModelVersion) is fetched from
the registry (DownloadModelVersion) into the shared, verified cache of ``cache.py`` (keyed by
sha256, unpacked once when it is a tar/zip archive) and loaded from there; the cache entry is pinned
while the version uses it.

A ``file:///abs/path`` artifact URI must lie under one
of the allowed artifact roots (``MODEL_SERVER_ARTIFACT_ROOTS``): it is checked again here, before
anything is read, with :func:`modelserve_common.artifact_uri.resolve_artifact_uri` (no ``..``, no
host, no query, no symlink out of the roots, only regular files and folders), and every file is
opened with :func:`~modelserve_common.artifact_uri.open_artifact_file` (``O_NOFOLLOW``, regular
files only). A refusal names the rule and states nothing about the refused file (not whether it
exists, nor its size or digest). It names either

- a **single file**: the model itself (``model.onnx`` for backend ``onnx``, ``model.py`` for
  ``python``). Its sha256 is the sha256 of its bytes (``sha256sum model.onnx``).
- a **directory**: a version folder of the repository layout (``model.py`` or ``model.onnx`` plus
  whatever files it needs). Its sha256 is the digest of the ``sha256sum`` listing of its regular
  files, sorted by relative path::

      cd DIR && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum

The artifact is **copied while it is hashed** into a private folder (``registry_artifact_dir``), and
the copy is what is loaded: what was verified is exactly what runs, even if the source changes
afterwards. A mismatch removes the copy and nothing is loaded; its message gives the digest the
registry expects, never the digest the file has (that is logged for the operator only).

The model config comes from the registry's record, never from a ``config.pbtxt`` in the artifact:
backend, input and output tensor specs and batching (with the deployment's overrides). When
``max_batch_size > 0`` the registry's shapes include the leading batch dimension (the KServe v2
metadata form, e.g. ``[-1, 16]``); it is dropped for the config's ``dims``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.artifact_store import parse_blob_uri
from modelserve_common.artifact_uri import (
    MAX_ARTIFACT_URI_LENGTH,
    open_artifact_file,
    resolve_artifact_uri,
)
from modelserve_common.errors import InvalidArgument
from modelserve_model_server.cache import ArtifactCache, CacheError

log = structlog.get_logger(__name__)

# registry backend -> (model server backend, file name of a single-file artifact)
BACKENDS = {"onnx": ("onnxruntime", "model.onnx"), "python": ("python", "model.py")}
_CHUNK = 1024 * 1024


Download = Callable[[str, int], AsyncIterator[bytes]]
"""(model, version) -> the artifact's bytes (the registry's DownloadModelVersion)."""


def registry_download(stub: registry_grpc.RegistryServiceStub, timeout_s: float) -> Download:
    """A Download through the registry's DownloadModelVersion (a failure: CacheError)."""

    async def download(model: str, version: int) -> AsyncIterator[bytes]:
        request = registry_pb.DownloadModelVersionRequest(model=model, version=str(version))
        try:
            async for message in stub.DownloadModelVersion(request, timeout=timeout_s):
                if message.WhichOneof("content") == "chunk":
                    yield message.chunk
        except grpc.aio.AioRpcError as exc:
            raise CacheError(
                f"fetching the artifact from the registry failed: {exc.code().name} {exc.details()}"
            ) from None

    return download


class ArtifactError(Exception):
    """The artifact cannot be used: missing, unreadable, wrong digest, unsupported URI or record."""


@dataclass(frozen=True)
class StagedArtifact:
    """A verified private copy of an artifact: the version folder to load."""

    version_dir: Path
    sha256: str


def path_from_uri(uri: str, allowed_roots: Sequence[Path], max_length: int = MAX_ARTIFACT_URI_LENGTH) -> Path:
    """The real local path of a ``file:///abs/path`` URI under ``allowed_roots``; ArtifactError
    naming the refused rule otherwise (:func:`modelserve_common.artifact_uri.resolve_artifact_uri`)."""
    try:
        return resolve_artifact_uri(uri, allowed_roots, max_length=max_length)
    except InvalidArgument as exc:
        raise ArtifactError(exc.message) from None


def _copy_file(src: Path, dst: Path, allowed_roots: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    try:
        fin = open_artifact_file(src, allowed_roots)
    except InvalidArgument as exc:
        raise ArtifactError(exc.message) from None
    with fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    """Regular files under ``root`` (symlinks followed to files), as sorted relative POSIX paths."""
    found: list[str] = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file():
                found.append(p.relative_to(root).as_posix())
    return sorted(found, key=lambda s: s.encode())


def copy_and_hash(src: Path, dst_dir: Path, single_file_name: str, allowed_roots: Sequence[Path]) -> str:
    """Copies the artifact ``src`` into the new folder ``dst_dir`` (a file becomes
    ``dst_dir/single_file_name``) and returns the sha256 of what was copied (module docstring).
    Every file is opened through :func:`open_artifact_file`: a file of a folder that links out of
    ``allowed_roots`` is refused (ArtifactError naming the rule)."""
    dst_dir.mkdir(parents=True)
    if src.is_file():
        return _copy_file(src, dst_dir / single_file_name, allowed_roots)
    if not src.is_dir():
        raise ArtifactError("the artifact is not a regular file or directory")
    listing = hashlib.sha256()
    for rel in _files(src):
        target = dst_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        listing.update(f"{_copy_file(src / rel, target, allowed_roots)}  {rel}\n".encode())
    return listing.hexdigest()


def artifact_sha256(src: Path) -> str:
    """The sha256 of an artifact file or folder as the registry expects it (module docstring)."""
    if src.is_file():
        digest = hashlib.sha256()
        with open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    listing = hashlib.sha256()
    for rel in _files(src):
        listing.update(f"{artifact_sha256(src / rel)}  {rel}\n".encode())
    return listing.hexdigest()


class ArtifactStore:
    """Verified copies of artifacts under ``root``: ``<root>/<model>/<version>/``. Only artifacts
    under ``allowed_roots`` are read (an empty list refuses every artifact)."""

    def __init__(
        self,
        root: Path,
        allowed_roots: Sequence[Path],
        max_uri_length: int = MAX_ARTIFACT_URI_LENGTH,
        *,
        cache: ArtifactCache | None = None,
        download: Download | None = None,
    ) -> None:
        self.root = root
        self.allowed_roots = tuple(allowed_roots)
        self.max_uri_length = max_uri_length
        self._cache = cache
        self._download = download

    async def stage(self, model: str, version: int, record: registry_pb.ModelVersion) -> StagedArtifact:
        """Copies and verifies the artifact of ``record``; raises ArtifactError with the reason."""
        try:
            digest = parse_blob_uri(record.artifact_uri)
        except InvalidArgument as exc:
            raise ArtifactError(exc.message) from None
        if digest is None and record.artifact_uri.startswith("s3://"):
            digest = record.artifact_sha256  # fetched through the registry, which verifies it
            if len(digest) != 64:
                raise ArtifactError("an s3:// artifact needs artifact_sha256")
        if digest is not None:
            return await self._stage_blob(model, version, record, digest)
        return await asyncio.to_thread(self._stage, model, version, record)

    async def _stage_blob(
        self, model: str, version: int, record: registry_pb.ModelVersion, digest: str
    ) -> StagedArtifact:
        if record.backend not in BACKENDS:
            raise ArtifactError(
                f"backend {record.backend!r} cannot be served by the model server's CPU backends"
            )
        if self._cache is None or self._download is None:
            raise ArtifactError("uploaded (blob:) and s3:// artifacts need the artifact cache and a registry")
        if digest != record.artifact_sha256:  # (always equal for an s3:// reference)
            raise ArtifactError(f"artifact URI {record.artifact_uri!r} does not match artifact_sha256")
        download = self._download
        try:
            folder = await self._cache.get(
                digest,
                record.artifact_format,
                BACKENDS[record.backend][1],
                lambda: download(model, version),
                pin=(model, version),  # pinned before the fetch ends: never evicted in between
            )
        except CacheError as exc:
            raise ArtifactError(str(exc)) from None
        return StagedArtifact(version_dir=folder, sha256=digest)

    def _stage(self, model: str, version: int, record: registry_pb.ModelVersion) -> StagedArtifact:
        if record.backend not in BACKENDS:
            raise ArtifactError(
                f"backend {record.backend!r} cannot be served by the model server's CPU backends"
            )
        src = path_from_uri(record.artifact_uri, self.allowed_roots, self.max_uri_length)
        model_dir = self.root / model
        tmp = model_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
        try:
            digest = copy_and_hash(src, tmp, BACKENDS[record.backend][1], self.allowed_roots)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning("artifact.unreadable", uri=record.artifact_uri, error=str(exc))
            raise ArtifactError(f"artifact URI {record.artifact_uri!r} cannot be read") from None
        except ArtifactError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if digest != record.artifact_sha256:  # (always equal for an s3:// reference)
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning(
                "artifact.sha256_mismatch",
                uri=record.artifact_uri,
                expected=record.artifact_sha256,
                found=digest,
            )
            raise ArtifactError(
                f"sha256 mismatch for {record.artifact_uri}: the artifact does not have the sha256 "
                f"the registry expects ({record.artifact_sha256})"
            )
        final = model_dir / str(version)
        if final.exists():  # a loaded model keeps its open files; the new copy replaces the folder
            old = model_dir / f".old-{version}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        return StagedArtifact(version_dir=final, sha256=digest)

    def remove(self, model: str, version: int) -> None:
        """Deletes the copy of an unloaded version (and unpins its cache entry)."""
        if self._cache is not None:
            self._cache.release(model, version)
        shutil.rmtree(self.root / model / str(version), ignore_errors=True)


def _datatype(kind: str, spec_name: str, datatype: str) -> int:
    name = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    if name not in config_pb.DataType.keys():
        raise ArtifactError(f"{kind} {spec_name!r}: datatype {datatype!r} is not supported")
    return config_pb.DataType.Value(name)


def merged_batching(
    version: registry_pb.BatchingConfig, overrides: registry_pb.BatchingConfig | None
) -> registry_pb.BatchingConfig:
    """The version's batching with the deployment's non-zero overrides applied."""
    merged = registry_pb.BatchingConfig()
    merged.CopyFrom(version)
    if overrides is not None:
        if overrides.max_batch_size:
            merged.max_batch_size = overrides.max_batch_size
        if overrides.preferred_batch_sizes:
            merged.ClearField("preferred_batch_sizes")
            merged.preferred_batch_sizes.extend(overrides.preferred_batch_sizes)
        if overrides.max_queue_delay_us:
            merged.max_queue_delay_us = overrides.max_queue_delay_us
        if overrides.max_queue_size:
            merged.max_queue_size = overrides.max_queue_size
    return merged


def model_config(
    model: str, record: registry_pb.ModelVersion, overrides: registry_pb.BatchingConfig | None = None
) -> config_pb.ModelConfig:
    """The model config of a registry version (backend, tensors, batching); ArtifactError when the
    record cannot be turned into one."""
    if record.backend not in BACKENDS:
        raise ArtifactError(f"backend {record.backend!r} cannot be served by the model server's CPU backends")
    batching = merged_batching(record.batching, overrides)
    mbs = int(batching.max_batch_size)
    cfg = config_pb.ModelConfig(name=model, backend=BACKENDS[record.backend][0], max_batch_size=mbs)
    for kind, specs, target in (
        ("input", record.inputs, cfg.input),
        ("output", record.outputs, cfg.output),
    ):
        for spec in specs:
            shape = list(spec.shape)
            if mbs > 0:
                if not shape:
                    raise ArtifactError(
                        f"{kind} {spec.name!r}: with max_batch_size {mbs} the shape must start with "
                        "the batch dimension (e.g. [-1, 4]), got []"
                    )
                shape = shape[1:]
            target.add(name=spec.name, data_type=_datatype(kind, spec.name, spec.datatype), dims=shape)
    if mbs > 0:
        db = cfg.dynamic_batching
        db.SetInParent()
        db.preferred_batch_size.extend(batching.preferred_batch_sizes)
        db.max_queue_delay_microseconds = int(batching.max_queue_delay_us)
        if batching.max_queue_size:
            db.default_queue_policy.max_queue_size = int(batching.max_queue_size)
            db.default_queue_policy.allow_timeout_override = True
    return cfg
