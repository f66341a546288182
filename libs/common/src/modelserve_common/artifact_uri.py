"""Artifact URIs confined to allowed roots: the one check every service applies before it trusts
a ``file://`` artifact URI (the registry when a version is created, the model server before it
reads an artifact).

:func:`resolve_artifact_uri` turns ``file:///abs/path`` into a real path under one of a list of
allowed root folders, or raises :class:`~modelserve_common.errors.InvalidArgument` whose message
names the rule that refused it:

1. ``too long``: the URI is longer than ``max_length`` characters (default
   :data:`MAX_ARTIFACT_URI_LENGTH`).
2. ``NUL``: the URI (raw or percent-decoded) contains a NUL character.
3. ``scheme``: anything other than ``file:``.
4. ``host``: a host other than empty or ``localhost`` (``file://evil/x``).
5. ``query or fragment``: ``?`` or ``#`` parts (also an empty ``?``/``#``).
6. ``not absolute``: the path is relative.
7. ``..``: a ``..`` or ``.`` path segment, raw, percent-encoded (``%2e%2e``, ``%2E.``) or
   double-encoded (``%252e``), or an encoded slash (``%2f``) that could build one.
8. ``not under an allowed root``: the path, as written, is not inside one of the roots. This is
   decided *before* the file system is consulted, so an existing and a missing file outside the
   roots get the very same message.
9. ``resolves outside``: a symbolic link (anywhere on the path) whose target (``realpath``) is not
   inside the real path of a root.
10. ``pseudo file system``: the real path is under ``/proc``, ``/sys`` or ``/dev``, whatever the
    roots say.
11. ``not a regular file or directory``: missing, a FIFO, a socket, a device, unreadable. One
    message for all of them.

No message ever states a fact about the file beyond the rule (no size, digest, target of a link,
nor whether a file outside the roots exists).

:func:`open_artifact_file` is the read-time defence in depth: between the check and the read a
path can be swapped for a symlink or a FIFO. It opens the real path with ``O_NOFOLLOW`` (the final
component cannot have become a symlink) and ``O_NONBLOCK`` (a FIFO cannot hang the open), then
checks with ``fstat`` that what was opened is a regular file, and on Linux that the opened file's
real path (``/proc/self/fd/N``) is still under a root.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from modelserve_common.errors import InvalidArgument

MAX_ARTIFACT_URI_LENGTH = 4096
"""Default upper bound of an artifact URI, in characters (PATH_MAX on Linux)."""

PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Never an artifact, whatever the allowed roots are."""

_PATH = "artifact path"
_ENCODED_DOT_OR_SLASH = re.compile(r"%(2e|2f|5c|25)", re.IGNORECASE)


def _refuse(uri: str, rule: str, what: str = "artifact URI") -> InvalidArgument:
    shown = uri if len(uri) <= 200 else uri[:200] + "..."
    return InvalidArgument(f"{what} {shown!r} refused: {rule}")


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _real_roots(allowed_roots: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(the roots as written, made absolute and normalised; their real paths)."""
    lexical: list[Path] = []
    real: list[Path] = []
    for r in allowed_roots:
        p = Path(os.path.abspath(os.fspath(r)))
        lexical.append(p)
        real.append(Path(os.path.realpath(p)))
    return lexical, real


def _check_real(uri: str, real: Path, real_roots: list[Path], what: str = "artifact URI") -> None:
    if not any(_under(real, r) for r in real_roots):
        raise _refuse(uri, "it resolves (through a symbolic link) outside the allowed roots", what)
    if any(_under(real, p) for p in PSEUDO_FILESYSTEMS):
        raise _refuse(uri, "it is on a pseudo file system (/proc, /sys, /dev)", what)


def resolve_artifact_uri(
    uri: str,
    allowed_roots: Iterable[str | os.PathLike[str]],
    *,
    max_length: int = MAX_ARTIFACT_URI_LENGTH,
) -> Path:
    """The real path (symlinks resolved) of the regular file or directory that the ``file://``
    ``uri`` names, which is inside one of ``allowed_roots``; :class:`InvalidArgument` naming the
    refused rule otherwise (module docstring). An empty ``allowed_roots`` refuses every URI."""
    if len(uri) > max_length:
        raise _refuse(uri, f"it is too long ({len(uri)} characters, at most {max_length} allowed)")
    if "\x00" in uri or "%00" in uri:
        raise _refuse(uri, "it contains a NUL character")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise _refuse(uri, f"it is not a valid URI ({exc})") from None
    if parts.scheme.lower() != "file":
        raise _refuse(uri, "only file:///absolute/path URIs are accepted")
    if parts.netloc not in ("", "localhost"):
        raise _refuse(uri, "the host must be empty or localhost (file:///absolute/path)")
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise _refuse(uri, "a query or fragment is not allowed")
    raw_path = parts.path
    if _ENCODED_DOT_OR_SLASH.search(raw_path):
        raise _refuse(uri, "'..' or percent-encoded '.', '/', '\\' or '%' in the path is not allowed")
    decoded = unquote(raw_path, errors="strict")
    if "\x00" in decoded:
        raise _refuse(uri, "it contains a NUL character")
    if not decoded.startswith("/"):
        raise _refuse(uri, "the path must be absolute (file:///absolute/path)")
    segments = decoded.split("/")
    if any(s in ("..", ".") for s in segments):
        raise _refuse(uri, "'..' or '.' path segments are not allowed")
    lexical = Path(os.path.normpath(decoded))
    lexical_roots, real_roots = _real_roots(allowed_roots)
    if not any(_under(lexical, r) for r in lexical_roots + real_roots):
        raise _refuse(uri, "it is not under an allowed artifact root")
    real = Path(os.path.realpath(lexical))
    _check_real(uri, real, real_roots)
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        st = None
    if st is None or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise _refuse(uri, "it does not name a readable regular file or directory")
    return real


def check_artifact_path(
    path: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]]
) -> Path:
    """The real path of ``path`` (a file found inside an artifact folder, say) after the same root,
    symlink and pseudo-file-system rules as :func:`resolve_artifact_uri`."""
    shown = os.fspath(path)
    lexical = Path(os.path.normpath(os.path.abspath(path)))
    lexical_roots, real_roots = _real_roots(allowed_roots)
    if not any(_under(lexical, r) for r in lexical_roots + real_roots):
        raise _refuse(shown, "it is not under an allowed artifact root", _PATH)
    real = Path(os.path.realpath(path))
    _check_real(shown, real, real_roots, _PATH)
    return real


def open_artifact_file(
    path: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]]
) -> BinaryIO:
    """Opens ``path`` for reading, safely: its real path must be under ``allowed_roots``; the
    final component is opened with ``O_NOFOLLOW`` (a symlink swapped in since the check is
    refused), ``fstat`` must show a regular file, and on Linux the opened file's real path is
    checked again. Raises :class:`InvalidArgument` naming the rule."""
    roots = list(allowed_roots)
    shown = os.fspath(path)
    real = check_artifact_path(path, roots)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        raise _refuse(shown, "it does not name a readable regular file", _PATH) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(shown, "it does not name a readable regular file", _PATH)
        proc_link = f"/proc/self/fd/{fd}"
        if os.path.exists(proc_link):
            _lexical, real_roots = _real_roots(roots)
            _check_real(shown, Path(os.readlink(proc_link)), real_roots, _PATH)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
