"""Safe unpacking of a directory model packed as one archive (``tar``, optionally gzip/bz2/xz
compressed, or ``zip``).

Every entry is checked before a byte is written, and the unpacked bytes are counted as they are
written (a header that lies about its size cannot get past the limit). Refused, with the reason in
an :class:`ArchiveRefused` message naming the entry:

- an absolute name, a ``..`` component, a NUL, or an empty name;
- a hard link; a symbolic link whose target is absolute or leaves the folder (zip: any link);
- devices, FIFOs, GNU sparse files and other special entries;
- a GNU long-name/long-link or PAX header over ``_MAX_META_BYTES`` (64 KiB): tarfile would read
  its whole declared size into memory before any budget counts it; more than ``_MAX_META_CHAIN``
  (8) such headers in a row (tarfile reads a chain recursively);
- more than ``max_files`` entries;
- more than ``max_bytes`` unpacked bytes in all (the decompression bomb);
- a corrupt archive.

Links are judged on disk, not by name (chained links such as ``a -> .``, ``a/b -> ..``,
``c -> b/..`` each look harmless by name): every folder and file is created first, with the real
path of its parent inside the folder, while no link exists yet; then the symbolic links, in order,
each refused (and removed) unless the real path of its parent and of the link itself stay inside
the folder; finally every link is resolved again, since a later link can change where an earlier
one leads. Symbolic links are kept (rather than refused) because directory models use them for
shared files, and a tar without them needs no change.

Nothing is left behind on refusal: the caller unpacks into a fresh folder and removes it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_CHUNK = 1024 * 1024
_MAX_META_BYTES = 64 * 1024
"""Largest GNU long-name/long-link or PAX extended header accepted (names and attributes only)."""
_MAX_META_CHAIN = 8
"""Most such headers in a row before one entry (tarfile reads each chained header recursively,
holding the previous ones: thousands in a row would exhaust the stack and memory). A real entry
has at most four: a global and a per-entry PAX header, a GNU long name and a GNU long link."""
_CHAIN_ATTR = "_modelserve_meta_chain"
_META_TYPES = frozenset(
    (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )
)


class ArchiveRefused(Exception):
    """The archive cannot be unpacked safely; ``str(exc)`` says why."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 20 * 1024**3
    max_files: int = 10_000


def _safe_name(name: str) -> str:
    if not name or "\x00" in name:
        raise ArchiveRefused(f"entry {name[:200]!r}: empty name or NUL")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or name.startswith("\\"):
        raise ArchiveRefused(f"entry {name[:200]!r}: absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ArchiveRefused(f"entry {name[:200]!r}: '..' component")
    return posixpath.normpath(name.replace("\\", "/"))


def _link_inside(name: str, target: str) -> bool:
    if not target or target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return not (joined == ".." or joined.startswith("../"))


class _Budget:
    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def entry(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveRefused(f"more than {self.limits.max_files} entries (the file-count limit)")

    def copy(self, name: str, src: IO[bytes], dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "wb") as out:
            while chunk := src.read(_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_bytes:
                    raise ArchiveRefused(
                        f"entry {name[:200]!r}: unpacked size exceeds {self.limits.max_bytes} bytes "
                        "(decompression bomb or too large)"
                    )
                out.write(chunk)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile reads it, a metadata header declaring more than 64 KiB, and GNU
    sparse members (their extension blocks are read into memory without a bound)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        chain = getattr(tarfile_, _CHAIN_ATTR, 0) + 1 if self.type in _META_TYPES else 0
        setattr(tarfile_, _CHAIN_ATTR, chain)
        if chain > _MAX_META_CHAIN:
            raise ArchiveRefused(
                f"more than {_MAX_META_CHAIN} long-name/PAX headers in a row before one entry"
            )
        if self.type in _META_TYPES and self.size > _MAX_META_BYTES:
            raise ArchiveRefused(
                f"tar header of type {self.type!r} declares {self.size} bytes, more than "
                f"{_MAX_META_BYTES} (long names and PAX attributes only)"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveRefused(f"entry {self.name[:200]!r}: sparse files are not allowed")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


def _unpack_tar(path: Path, dest: Path, budget: _Budget) -> None:
    links: list[tuple[str, str, str]] = []  # (name, target, shown): created after everything else
    with tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo) as tar:
        for member in tar:
            budget.entry()
            name = _safe_name(member.name)
            if name == ".":
                continue
            if member.islnk():
                raise ArchiveRefused(f"entry {member.name[:200]!r}: hard links are not allowed")
            if member.issym():
                if not _link_inside(name, member.linkname):
                    raise ArchiveRefused(
                        f"entry {member.name[:200]!r}: symbolic link to {member.linkname[:200]!r} "
                        "leaves the folder"
                    )
                links.append((name, member.linkname, member.name))
            elif member.isdir():
                _inside(dest, name, member.name).mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                src = tar.extractfile(member)
                assert src is not None
                with src:
                    budget.copy(member.name, src, _inside(dest, name, member.name))
            else:
                raise ArchiveRefused(f"entry {member.name[:200]!r}: special files are not allowed")
    _make_links(dest, links)


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _make_links(dest: Path, links: list[tuple[str, str, str]]) -> None:
    """Creates the symbolic links (after every other entry), each checked on disk as created, and
    all of them again at the end (a later link can redirect an earlier one)."""
    root = str(dest.resolve())
    for name, target, shown in links:
        where = dest / name
        if not _within(root, os.path.realpath(where.parent)):
            raise ArchiveRefused(f"entry {shown[:200]!r}: created through a link out of the folder")
        if where.is_symlink() or where.exists():
            raise ArchiveRefused(f"entry {shown[:200]!r}: a symbolic link replaces another entry")
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(target)
        if not _within(root, os.path.realpath(where)):
            where.unlink()
            raise ArchiveRefused(
                f"entry {shown[:200]!r}: symbolic link to {target[:200]!r} leads out of the folder"
            )
    for name, target, shown in links:
        if not _within(root, os.path.realpath(dest / name)):
            raise ArchiveRefused(
                f"entry {shown[:200]!r}: symbolic link to {target[:200]!r} leads out of the folder "
                "through a later link"
            )


def _inside(dest: Path, name: str, shown: str) -> Path:
    """The target path, refused when its real parent is not inside the folder (the folder holds
    no link while files and folders are created; this is the second line of defence)."""
    target = dest / name
    if not _within(str(dest.resolve()), os.path.realpath(target.parent)):
        raise ArchiveRefused(f"entry {shown[:200]!r}: writes through a link out of the folder")
    if target.is_symlink():
        raise ArchiveRefused(f"entry {shown[:200]!r}: overwrites a symbolic link")
    return target


def _unpack_zip(path: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_files:
            raise ArchiveRefused(f"more than {budget.limits.max_files} entries (the file-count limit)")
        for info in infos:
            budget.entry()
            name = _safe_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveRefused(f"entry {info.filename[:200]!r}: links are not allowed in zip archives")
            if info.is_dir():
                _inside(dest, name, info.filename).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                budget.copy(info.filename, src, _inside(dest, name, info.filename))


def unpack_archive(path: Path, fmt: str, dest: Path, limits: ArchiveLimits) -> None:
    """Unpacks ``path`` (``fmt`` "tar" or "zip") into the new folder ``dest``; ArchiveRefused with
    the reason otherwise (``dest`` is then removed)."""
    dest.mkdir(parents=True)
    budget = _Budget(limits)
    try:
        if fmt == "tar":
            _unpack_tar(path, dest, budget)
        elif fmt == "zip":
            _unpack_zip(path, dest, budget)
        else:
            raise ArchiveRefused(f"unknown archive format {fmt!r} (expected tar or zip)")
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveRefused(f"corrupt {fmt} archive ({type(exc).__name__})") from None
    except ArchiveRefused:
        shutil.rmtree(dest, ignore_errors=True)
        raise
