"""Preparing an artifact for upload: a file as is, a folder packed as one tar archive."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_BACKEND_BY_SUFFIX = {".onnx": "onnx", ".py": "python"}


@dataclass
class Artifact:
    data: bytes
    sha256: str
    artifact_format: str  # "" (one file) or "tar"
    backend: str | None


def infer_backend(path: Path) -> str | None:
    """The backend a file or folder implies: *.onnx -> onnx, *.py -> python (a folder: from its
    files; config.pbtxt -> triton), None when it cannot tell."""
    if path.is_file():
        return _BACKEND_BY_SUFFIX.get(path.suffix.lower())
    names = [p for p in path.rglob("*") if p.is_file()]
    if any(p.name == "config.pbtxt" for p in names):
        return "triton"
    found = {_BACKEND_BY_SUFFIX[p.suffix.lower()] for p in names if p.suffix.lower() in _BACKEND_BY_SUFFIX}
    return found.pop() if len(found) == 1 else None


def prepare(path: str | Path) -> Artifact:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        data = p.read_bytes()
        fmt = ""
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                info = tar.gettarinfo(str(f), arcname=str(f.relative_to(p)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with f.open("rb") as fh:
                    tar.addfile(info, fh)
        data = buf.getvalue()
        fmt = "tar"
    return Artifact(data, hashlib.sha256(data).hexdigest(), fmt, infer_backend(p))


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
