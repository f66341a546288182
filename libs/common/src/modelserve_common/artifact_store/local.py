"""The local filesystem store: blobs as files under one folder (by default under the service's
data directory). An upload is written to ``tmp/<random>.part`` while it is hashed, ``fsync``-ed,
then promoted by an atomic ``rename`` to ``sha256/<aa>/<hex>``. A reader never sees a half-written
blob; a crash leaves only a temporary file, which :meth:`LocalArtifactStore.sweep_temporary`
deletes once it is older than the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from modelserve_common.artifact_store.base import READ_CHUNK_BYTES, StoredBlob, Verifier, check_digest
from modelserve_common.errors import NotFound, Unavailable


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
        verifier = Verifier(max_bytes, expected_size, expected_sha256)
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
