"""The artifact cache (single flight, verification, corruption, LRU eviction sparing loaded
versions, reuse after restart) and safe archive unpacking (zip-slip, absolute paths, links out,
10^5 entries, a decompression bomb) on real files."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from ms_test_repo import ByteSource
from prometheus_client import REGISTRY

from modelserve_model_server.archive import ArchiveLimits, ArchiveRefused, unpack_archive
from modelserve_model_server.cache import ArtifactCache, CacheError


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Source = ByteSource


async def test_cache_same_blob_for_many_versions_downloads_once(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=10**9)
    src = Source(os.urandom(100_000))
    folders = await asyncio.gather(*(cache.get(sha(src.data), "", "model.onnx", src.fetch) for _ in range(5)))
    assert src.downloads == 1
    assert {f for f in folders} == {tmp_path / sha(src.data) / "files"}
    assert (folders[0] / "model.onnx").read_bytes() == src.data
    await cache.get(sha(src.data), "", "model.py", src.fetch)
    assert src.downloads == 1 and cache.hits >= 1
    assert REGISTRY.get_sample_value("modelserve_model_server_artifact_fetch_seconds_count") >= 1
    assert REGISTRY.get_sample_value("modelserve_model_server_artifact_cache_total", {"event": "hit"}) >= 1


async def test_cache_reused_after_restart_and_corruption_is_refetched(tmp_path: Path) -> None:
    src = Source(os.urandom(50_000))
    digest = sha(src.data)
    await ArtifactCache(tmp_path, 10**9).get(digest, "", "model.onnx", src.fetch)
    restarted = ArtifactCache(tmp_path, 10**9)
    await restarted.get(digest, "", "model.onnx", src.fetch)
    assert src.downloads == 1
    data_file = tmp_path / digest / "data"
    data_file.write_bytes(b"x" + data_file.read_bytes()[1:])  # flipped on disk
    again = ArtifactCache(tmp_path, 10**9)
    folder = await again.get(digest, "", "model.onnx", src.fetch)
    assert src.downloads == 2
    assert (folder / "model.onnx").read_bytes() == src.data


async def test_cache_wrong_bytes_from_source_are_refused_and_not_kept(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, 10**9)
    src = Source(b"not what was promised")
    with pytest.raises(CacheError, match="does not have the sha256 the registry expects"):
        await cache.get("a" * 64, "", "model.onnx", src.fetch)
    assert not (tmp_path / ("a" * 64) / "data").exists()
    assert list((tmp_path / ("a" * 64)).iterdir()) == []


async def test_cache_eviction_is_lru_and_spares_pinned_entries(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=250_000)
    a, b, c = (Source(os.urandom(100_000)) for _ in range(3))
    await cache.get(sha(a.data), "", "m", a.fetch)
    cache.pin("model-a", 1, sha(a.data))  # loaded
    os.utime(tmp_path / sha(a.data) / "used", (1, 1))  # the oldest
    await cache.get(sha(b.data), "", "m", b.fetch)
    os.utime(tmp_path / sha(b.data) / "used", (2, 2))
    await cache.get(sha(c.data), "", "m", c.fetch)  # 300 kB > 250 kB: evict b (a is pinned)
    assert names(tmp_path) == sorted([sha(a.data), sha(c.data)])
    assert cache.evictions == 1
    cache.release("model-a", 1)
    assert cache.evict() == 0  # fits now
    cache.max_bytes = 150_000
    assert cache.evict() == 1
    assert names(tmp_path) == [sha(c.data)]


def tar_bytes(entries: list[tarfile.TarInfo], payloads: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in entries:
            data = (payloads or {}).get(info.name, b"")
            if info.isfile():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


async def test_cache_unpacks_a_directory_model_once(tmp_path: Path) -> None:
    archive = tar_bytes(
        [
            member("model.py"),
            member("lib", tarfile.DIRTYPE),
            member("lib/util.py"),
            member("link", tarfile.SYMTYPE, "lib/util.py"),
        ],
        {"model.py": b"print(1)", "lib/util.py": b"X = 1"},
    )
    cache = ArtifactCache(tmp_path / "c", 10**9)
    src = Source(archive)
    tree = await cache.get(sha(archive), "tar", "model.py", src.fetch)
    assert (tree / "model.py").read_bytes() == b"print(1)"
    assert (tree / "link").read_bytes() == b"X = 1"
    (tree / "model.py").write_bytes(b"changed")  # unpacked once: not unpacked again
    assert await cache.get(sha(archive), "tar", "model.py", src.fetch) == tree
    assert (tree / "model.py").read_bytes() == b"changed"


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([member("../evil.py")], "entry '../evil.py': '..' component"),
        ([member("a/../../evil.py")], "'..' component"),
        ([member("/etc/evil")], "entry '/etc/evil': absolute path"),
        (
            [member("out", tarfile.SYMTYPE, "../../etc/passwd")],
            "symbolic link to '../../etc/passwd' leaves the folder",
        ),
        ([member("abs", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link to '/etc/passwd' leaves the folder"),
        ([member("hard", tarfile.LNKTYPE, "x")], "hard links are not allowed"),
        ([member("fifo", tarfile.FIFOTYPE)], "special files are not allowed"),
    ],
)
def test_hostile_tar_is_refused_with_the_reason(
    tmp_path: Path, entries: list[tarfile.TarInfo], reason: str
) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(entries))
    with pytest.raises(
        ArchiveRefused, match=reason.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        unpack_archive(path, "tar", tmp_path / "out", ArchiveLimits())
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "evil.py").exists()


def test_zip_slip_and_zip_symlink_are_refused(tmp_path: Path) -> None:
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("../../evil.txt", b"bad")
    with pytest.raises(ArchiveRefused, match=r"entry '\.\./\.\./evil\.txt': '\.\.' component"):
        unpack_archive(slip, "zip", tmp_path / "out", ArchiveLimits())
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("escape")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveRefused, match="links are not allowed in zip archives"):
        unpack_archive(link, "zip", tmp_path / "out2", ArchiveLimits())
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_hundred_thousand_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(100_000):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(ArchiveRefused, match="more than 10000 entries"):
        unpack_archive(path, "zip", tmp_path / "out", ArchiveLimits(max_files=10_000))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_decompression_bomb_is_refused(tmp_path: Path, fmt: str) -> None:
    zeros = bytes(64 * 1024 * 1024)
    path = tmp_path / f"bomb.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", zeros)
    else:
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("zeros.bin")
            info.size = len(zeros)
            tar.addfile(info, io.BytesIO(zeros))
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(ArchiveRefused, match=r"entry 'zeros\.bin': unpacked size exceeds 8388608 bytes"):
        unpack_archive(path, fmt, tmp_path / "out", ArchiveLimits(max_bytes=8 * 1024 * 1024))
    assert not (tmp_path / "out").exists()
