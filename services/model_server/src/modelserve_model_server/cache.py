"""The model server's artifact cache: uploaded (``blob:sha256:…``) artifacts fetched once into a
local folder keyed by sha256, verified, unpacked once, shared by every version using the same bytes.

Layout under ``root``::

    <sha256>/data          the verified bytes (written to data.part-<random>, renamed when the
                           digest matched: a crash never leaves a file that looks complete)
    <sha256>/files/<name>  a single-file artifact as its backend expects it (hard link of data)
    <sha256>/tree/         an archive unpacked once (archive.py), complete when tree.done exists
    <sha256>/used          touched on every use: least-recently-used order survives a restart

- **Verified:** the bytes are hashed while downloaded, and ``data`` is hashed again on first use
  after start (a file corrupted on disk is detected, removed and fetched again).
- **Single flight:** concurrent requests for one digest share one download, and one unpack of an
  archive (two versions with the same archive never unpack into the same folder at once).
- **Bounded:** after each fetch, entries are evicted least recently used first until the total is
  within ``max_bytes``, never one a loaded version uses (``pin``/``release``; ``get(pin=…)`` pins
  before it starts, so no eviction falls between the fetch and the pin), nor one a ``get`` in
  progress is fetching, unpacking or linking.
- **Restart:** entries already on disk are reused (verified once, as above).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from prometheus_client import Counter, Histogram

from modelserve_model_server.archive import ArchiveLimits, ArchiveRefused, unpack_archive

log = structlog.get_logger(__name__)

CACHE_EVENTS = Counter(
    "modelserve_model_server_artifact_cache_total",
    "Artifact cache lookups and evictions by event (hit, miss, eviction).",
    ["event"],
)
FETCH_SECONDS = Histogram(
    "modelserve_model_server_artifact_fetch_seconds",
    "Download and verification of one artifact into the cache (seconds).",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

Fetch = Callable[[], AsyncIterator[bytes]]
_CHUNK = 1024 * 1024


class CacheError(Exception):
    """A cached artifact cannot be produced; ``str(exc)`` says why (no secrets)."""


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _size(entry: Path) -> int:
    """Bytes under ``entry`` (a hard-linked file counted once)."""
    total = 0
    seen: set[int] = set()
    for dirpath, _dirs, files in os.walk(entry):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                st = (Path(dirpath) / name).lstat()
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
    return total


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int, archive_limits: ArchiveLimits | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.archive_limits = archive_limits or ArchiveLimits()
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(".evicted-*"):  # an eviction cut short by a crash
            shutil.rmtree(leftover, ignore_errors=True)
        self._flights: dict[str, asyncio.Task[Path]] = {}
        self._trees: dict[str, asyncio.Task[Path]] = {}
        self._verified: set[str] = set()
        # pins and gets in progress are read by evict() in a worker thread: guarded by _lock
        self._lock = threading.Lock()
        self._pins: dict[tuple[str, int], str] = {}
        self._using: dict[str, int] = {}
        self.fetches = 0
        self.hits = 0
        self.evictions = 0
        self.unpacks = 0

    # -- pins ----------------------------------------------------------------------------------
    def pin(self, model: str, version: int, sha256: str) -> None:
        with self._lock:
            self._pins[(model, version)] = sha256

    def release(self, model: str, version: int) -> None:
        with self._lock:
            self._pins.pop((model, version), None)

    def _use(self, sha256: str, delta: int) -> None:
        with self._lock:
            count = self._using.get(sha256, 0) + delta
            if count > 0:
                self._using[sha256] = count
            else:
                self._using.pop(sha256, None)

    def _landed(self, flights: dict[str, asyncio.Task[Path]], sha256: str) -> Callable[[object], None]:
        def done(_task: object) -> None:
            flights.pop(sha256, None)
            self._use(sha256, -1)

        return done

    # -- get -----------------------------------------------------------------------------------
    async def get(
        self, sha256: str, fmt: str, file_name: str, fetch: Fetch, pin: tuple[str, int] | None = None
    ) -> Path:
        """The version folder for the artifact ``sha256`` (fetched with ``fetch`` if needed):
        ``<sha>/files`` holding ``file_name``, or ``<sha>/tree`` for a tar/zip archive. ``pin``
        (model, version) pins the entry from the start (kept when this returns, undone when it
        raises); the entry is never evicted while the get runs."""
        previous = None
        if pin is not None:
            with self._lock:
                previous = self._pins.get(pin)
                self._pins[pin] = sha256
        self._use(sha256, 1)
        try:
            return await self._get(sha256, fmt, file_name, fetch)
        except BaseException:
            if pin is not None:
                with self._lock:
                    if previous is None:
                        self._pins.pop(pin, None)
                    else:
                        self._pins[pin] = previous
            raise
        finally:
            self._use(sha256, -1)

    async def _get(self, sha256: str, fmt: str, file_name: str, fetch: Fetch) -> Path:
        data = await self._data(sha256, fetch)
        entry = data.parent
        (entry / "used").touch()
        if fmt in ("tar", "zip"):
            tree = self._trees.get(sha256)
            if tree is None:  # single flight: one unpack per digest at a time
                tree = asyncio.ensure_future(asyncio.to_thread(self._tree, entry, data, fmt))
                self._trees[sha256] = tree
                self._use(sha256, 1)
                tree.add_done_callback(self._landed(self._trees, sha256))
            return await asyncio.shield(tree)
        files = entry / "files"
        target = files / file_name
        if not target.exists():
            files.mkdir(exist_ok=True)
            tmp = files / f".{file_name}.{uuid.uuid4().hex[:8]}"
            os.link(data, tmp)
            os.replace(tmp, target)
        return files

    async def _data(self, sha256: str, fetch: Fetch) -> Path:
        flight = self._flights.get(sha256)
        if flight is None:
            flight = asyncio.ensure_future(self._ensure(sha256, fetch))
            self._flights[sha256] = flight
            self._use(sha256, 1)  # until the download ends, even if every waiter is cancelled
            flight.add_done_callback(self._landed(self._flights, sha256))
        return await asyncio.shield(flight)

    async def _ensure(self, sha256: str, fetch: Fetch) -> Path:
        entry = self.root / sha256
        data = entry / "data"
        if data.exists():
            if sha256 in self._verified:
                self.hits += 1
                CACHE_EVENTS.labels("hit").inc()
                return data
            if await asyncio.to_thread(_hash_file, data) == sha256:
                self._verified.add(sha256)
                self.hits += 1
                CACHE_EVENTS.labels("hit").inc()
                return data
            log.warning("artifact_cache.corrupt", sha256=sha256)
            await asyncio.to_thread(shutil.rmtree, entry, True)
        entry.mkdir(parents=True, exist_ok=True)
        part = entry / f"data.part-{uuid.uuid4().hex[:8]}"
        digest = hashlib.sha256()
        started = time.monotonic()
        self.fetches += 1
        CACHE_EVENTS.labels("miss").inc()
        try:
            out = await asyncio.to_thread(part.open, "wb")
            with out:
                async for chunk in fetch():
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
            if digest.hexdigest() != sha256:
                raise CacheError(f"fetched artifact does not have the sha256 the registry expects ({sha256})")
            os.replace(part, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        self._verified.add(sha256)
        FETCH_SECONDS.observe(time.monotonic() - started)
        log.info("artifact_cache.fetched", sha256=sha256, seconds=round(time.monotonic() - started, 3))
        await asyncio.to_thread(self.evict, keep=sha256)
        return data

    def _tree(self, entry: Path, data: Path, fmt: str) -> Path:
        tree, done = entry / "tree", entry / "tree.done"
        if done.exists():
            return tree
        shutil.rmtree(tree, ignore_errors=True)
        self.unpacks += 1
        try:
            unpack_archive(data, fmt, tree, self.archive_limits)
        except ArchiveRefused as exc:
            raise CacheError(f"archive refused: {exc}") from None
        done.touch()
        return tree

    # -- eviction ------------------------------------------------------------------------------
    def evict(self, keep: str = "") -> int:
        """Removes least recently used entries until the cache fits ``max_bytes``; never ``keep``
        nor a pinned digest, nor one a get or a download/unpack in flight uses. Returns how many
        were removed."""
        entries = []
        total = 0
        for entry in self.root.iterdir():
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            size = _size(entry)
            total += size
            used = entry / "used"
            when = used.stat().st_mtime if used.exists() else 0.0
            entries.append((when, entry, size))
        removed = 0
        for _when, entry, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            with self._lock:  # checked and moved aside atomically: a get starting now refetches
                if entry.name == keep or entry.name in self._pins.values() or entry.name in self._using:
                    continue
                trash = self.root / f".evicted-{entry.name}-{uuid.uuid4().hex[:8]}"
                entry.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._verified.discard(entry.name)
            total -= size
            removed += 1
            self.evictions += 1
            CACHE_EVENTS.labels("eviction").inc()
            log.info("artifact_cache.evicted", sha256=entry.name, bytes=size)
        return removed
