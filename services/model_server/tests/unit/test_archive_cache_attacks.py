"""Regression tests of the reviewer's attacks on archive unpacking and the artifact cache: chained
symbolic links that climb out of the unpacked folder (into another cache entry), oversized GNU
long-name / PAX headers read whole into memory, two unpacks of one archive at once, and eviction
of an entry a get is still using. Each reproduces the attack on real files."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest
from ms_test_repo import ByteSource

from modelserve_model_server.archive import ArchiveLimits, ArchiveRefused, unpack_archive
from modelserve_model_server.cache import ArtifactCache


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_of(entries: list[tuple[str, bytes, str | bytes]]) -> bytes:
    """(name, type, link target or file bytes) entries as an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                assert isinstance(payload, str)
                info.linkname = payload
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


SYM, REG, DIR = tarfile.SYMTYPE, tarfile.REGTYPE, tarfile.DIRTYPE
OTHER = "b" * 64  # another cache entry's digest


def cache_with_secret(tmp_path: Path) -> tuple[Path, Path]:
    """A cache root holding another entry's model bytes, and the folder the attack unpacks into."""
    root = tmp_path / "cache"
    (root / OTHER / "files").mkdir(parents=True)
    (root / OTHER / "files" / "model.onnx").write_bytes(b"another tenant's model")
    entry = root / ("a" * 64)
    entry.mkdir()
    return root, entry / "tree"


CHAINS: dict[str, list[tuple[str, bytes, str | bytes]]] = {
    # each link looks harmless by its name; on disk a/b is b, and b -> .. leaves the folder
    "reviewer": [
        ("a", SYM, "."),
        ("a/b", SYM, ".."),
        ("c", SYM, "b/.."),
        ("model.onnx", SYM, f"c/{OTHER}/files/model.onnx"),
    ],
    "climb": [("a", SYM, "."), ("a/b", SYM, ".."), ("c", SYM, "b/.."), ("x", SYM, "c/..")],
    # c is judged while x does not exist yet; x -> . then turns c into the folder's parent
    "later_link_redirects_earlier": [("c", SYM, "x/.."), ("x", SYM, ".")],
    # a file written under a link to the folder's parent
    "file_through_link": [("a", SYM, "."), ("a/b", SYM, ".."), ("b/evil.py", REG, b"pwned")],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_chained_symlinks_cannot_leave_the_folder(tmp_path: Path, chain: str) -> None:
    root, dest = cache_with_secret(tmp_path)
    archive = tmp_path / "evil.tar"
    archive.write_bytes(tar_of(CHAINS[chain]))
    with pytest.raises(ArchiveRefused, match="out of the folder|replaces another entry"):
        unpack_archive(archive, "tar", dest, ArchiveLimits())
    assert not dest.exists()  # nothing left behind
    assert sorted(p.name for p in root.iterdir()) == sorted(["a" * 64, OTHER])
    assert sorted(p.name for p in (root / ("a" * 64)).iterdir()) == []
    assert not (root / "evil.py").exists()


def test_links_inside_the_folder_still_work(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar"
    archive.write_bytes(
        tar_of(
            [
                ("lib", DIR, ""),
                ("lib/util.py", REG, b"X = 1"),
                ("here", SYM, "."),
                ("alias", SYM, "here/lib/util.py"),
                ("lib/up", SYM, "../lib"),
            ]
        )
    )
    dest = tmp_path / "out"
    unpack_archive(archive, "tar", dest, ArchiveLimits())
    assert (dest / "alias").read_bytes() == b"X = 1"
    assert (dest / "lib" / "up" / "util.py").read_bytes() == b"X = 1"


def huge_header_tar_gz(path: Path, kind: bytes, declared: int) -> None:
    """A .tar.gz whose first header (GNU long name / long link / PAX) declares ``declared`` bytes,
    all present (zeros compress to almost nothing)."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    info.size = declared
    chunk = bytes(1024 * 1024)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(info.tobuf(tarfile.GNU_FORMAT))
        for _ in range(declared // len(chunk)):
            out.write(chunk)
        out.write(bytes(1024))  # end of archive


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE])
def test_huge_metadata_header_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    declared = 48 * 1024 * 1024
    path = tmp_path / "long.tar.gz"
    huge_header_tar_gz(path, kind, declared)
    assert path.stat().st_size < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRefused, match=f"declares {declared} bytes, more than 65536"):
            unpack_archive(path, "tar", tmp_path / "out", ArchiveLimits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the header was read into memory"
    assert not (tmp_path / "out").exists()


def test_a_long_chain_of_long_name_headers_is_refused(tmp_path: Path) -> None:
    """tarfile reads chained long-name headers recursively: 3000 in a row exhausted the stack."""
    out = io.BytesIO()
    for _ in range(3000):
        info = tarfile.TarInfo("././@LongLink")
        info.type = tarfile.GNUTYPE_LONGNAME
        info.size = 100
        out.write(info.tobuf(tarfile.GNU_FORMAT) + b"n" * 100 + bytes(412))
    last = tarfile.TarInfo("ok.py")
    out.write(last.tobuf(tarfile.GNU_FORMAT) + bytes(1024))
    path = tmp_path / "chain.tar"
    path.write_bytes(out.getvalue())
    with pytest.raises(ArchiveRefused, match="more than 8 long-name/PAX headers in a row"):
        unpack_archive(path, "tar", tmp_path / "out", ArchiveLimits())
    assert not (tmp_path / "out").exists()


def test_small_long_names_still_unpack(tmp_path: Path) -> None:
    name = "/".join(["n" * 60] * 4) + "/m.py"  # 250 characters: needs a GNU long-name header
    archive = tmp_path / "long.tar"
    archive.write_bytes(tar_of([(name, REG, b"ok")]))
    unpack_archive(archive, "tar", tmp_path / "out", ArchiveLimits())
    assert (tmp_path / "out" / name).read_bytes() == b"ok"


def Source(data: bytes) -> ByteSource:  # noqa: N802 (reads as the class it builds)
    return ByteSource(data, chunk=65536)


async def test_concurrent_gets_of_one_archive_unpack_it_once(tmp_path: Path) -> None:
    files = [(f"pkg/m{i}.py", REG, os.urandom(2048)) for i in range(300)]
    archive = tar_of([("pkg", DIR, ""), *files])
    cache = ArtifactCache(tmp_path / "c", 10**9)
    src = Source(archive)
    trees = await asyncio.gather(*(cache.get(sha(archive), "tar", "model.py", src.fetch) for _ in range(4)))
    assert src.downloads == 1
    assert cache.unpacks == 1
    assert len(set(trees)) == 1
    for name, _kind, payload in files:
        assert (trees[0] / name).read_bytes() == payload


class PausedUnpack(ArtifactCache):
    """Holds the unpack (in its worker thread) until the test lets it go."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.started = threading.Event()
        self.proceed = threading.Event()

    def _tree(self, entry: Path, data: Path, fmt: str) -> Path:
        self.started.set()
        self.proceed.wait(timeout=60)
        return super()._tree(entry, data, fmt)


async def test_entry_being_unpacked_is_not_evicted_by_another_fetch(tmp_path: Path) -> None:
    archive = tar_of([("model.py", REG, os.urandom(100_000))])
    other = os.urandom(100_000)
    cache = PausedUnpack(tmp_path / "c", max_bytes=150_000)  # room for one entry only
    unpacking = asyncio.ensure_future(cache.get(sha(archive), "tar", "model.py", Source(archive).fetch))
    try:
        assert await asyncio.to_thread(cache.started.wait, 60)  # fetched, not yet unpacked nor pinned
        await cache.get(sha(other), "", "model.onnx", Source(other).fetch)  # over budget: evicts
        assert (tmp_path / "c" / sha(archive) / "data").exists()
    finally:
        cache.proceed.set()
    tree = await unpacking
    assert (tree / "model.py").exists()


async def test_get_pins_before_it_returns_and_a_failed_get_restores_the_pin(tmp_path: Path) -> None:
    a, b = os.urandom(100_000), os.urandom(100_000)
    cache = ArtifactCache(tmp_path, max_bytes=150_000)
    await cache.get(sha(a), "", "model.onnx", Source(a).fetch, pin=("model-a", 1))
    os.utime(tmp_path / sha(a) / "used", (1, 1))  # the least recently used
    await cache.get(sha(b), "", "model.onnx", Source(b).fetch)  # over budget, but a is pinned
    assert (tmp_path / sha(a) / "data").exists() and cache.evictions == 0
    with pytest.raises(Exception, match="does not have the sha256"):
        await cache.get("c" * 64, "", "model.onnx", Source(b"wrong").fetch, pin=("model-a", 1))
    assert cache.evict() >= 1  # model-a still pins a (restored): b goes (and the empty folder)
    assert (tmp_path / sha(a) / "data").exists() and not (tmp_path / sha(b)).exists()
    cache.release("model-a", 1)
    cache.max_bytes = 50_000
    assert cache.evict() >= 1  # a (and the empty folder the refused fetch left)
    assert not (tmp_path / sha(a)).exists()


async def test_an_eviction_cut_short_is_cleaned_up_at_start(tmp_path: Path) -> None:
    """Eviction moves an entry aside (.evicted-…) before removing it; a crash in between leaves
    the moved folder, which the next start removes and which is never served."""
    leftover = tmp_path / f".evicted-{'d' * 64}-0123abcd"
    (leftover / "files").mkdir(parents=True)
    (leftover / "data").write_bytes(b"x" * 1000)
    data = os.urandom(1000)
    cache = ArtifactCache(tmp_path, max_bytes=10**9)
    assert not leftover.exists()
    await cache.get(sha(data), "", "model.onnx", Source(data).fetch)
    assert names(tmp_path) == [sha(data)]
