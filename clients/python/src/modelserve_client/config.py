"""Settings: explicit arguments, then MODELSERVE_URL / MODELSERVE_API_KEY / MODELSERVE_TOKEN,
then the named profile in config.toml (directory: $MODELSERVE_CONFIG_DIR, else
$XDG_CONFIG_HOME/modelserve, else ~/.config/modelserve). The file is written with mode 0600."""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "127.0.0.1:50050"
DEFAULT_PROFILE = "default"


def config_dir() -> Path:
    if d := os.environ.get("MODELSERVE_CONFIG_DIR"):
        return Path(d)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelserve"


def config_path() -> Path:
    return config_dir() / "config.toml"


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str | None = None
    token: str | None = None
    tls: bool = False


def read_profiles() -> dict[str, dict[str, Any]]:
    p = config_path()
    if not p.exists():
        return {}
    with p.open("rb") as f:
        data = tomllib.load(f)
    profiles = data.get("profiles", {})
    return {str(k): dict(v) for k, v in profiles.items() if isinstance(v, dict)}


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_profile(
    name: str, url: str, api_key: str | None = None, token: str | None = None, tls: bool = False
) -> Path:
    """Create or replace one profile, keeping the others; the file is mode 0600."""
    profiles = read_profiles()
    entry: dict[str, Any] = {"url": url, "tls": tls}
    if api_key:
        entry["api_key"] = api_key
    if token:
        entry["token"] = token
    profiles[name] = entry
    lines = ["# written by `modelserve login`; holds credentials: keep it private (mode 0600)"]
    for pname, prof in profiles.items():
        lines.append(f"\n[profiles.{_quote(pname)}]")
        for k, v in prof.items():
            lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else _quote(str(v))}")
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` to a fresh temporary file beside ``path`` (created here, never an existing
    file or a link someone planted: O_EXCL | O_NOFOLLOW, mode 0600 from the start) and renames it
    over ``path``; the secret is never in a file another user can read."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def resolve(
    url: str | None = None,
    api_key: str | None = None,
    token: str | None = None,
    tls: bool | None = None,
    profile: str | None = None,
) -> Settings:
    """Merge arguments, environment and profile (in that order of precedence)."""
    name = profile or os.environ.get("MODELSERVE_PROFILE") or DEFAULT_PROFILE
    prof = read_profiles().get(name, {})
    if profile and not prof:
        raise ValueError(f"no profile {profile!r} in {config_path()}")
    url = url or os.environ.get("MODELSERVE_URL") or prof.get("url") or DEFAULT_URL
    if api_key is None and token is None:
        api_key = os.environ.get("MODELSERVE_API_KEY") or None
        token = os.environ.get("MODELSERVE_TOKEN") or None
        if api_key is None and token is None:
            api_key = prof.get("api_key")
            token = prof.get("token")
    use_tls = bool(prof.get("tls", False)) if tls is None else tls
    for scheme, secure in (("https://", True), ("grpcs://", True), ("http://", False), ("grpc://", False)):
        if url.startswith(scheme):
            url = url[len(scheme) :]
            use_tls = secure if tls is None else tls
    return Settings(url=url.rstrip("/"), api_key=api_key, token=token, tls=use_tls)
