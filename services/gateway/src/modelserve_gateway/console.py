"""The web console (/console) and the OpenAPI viewer (/docs): the static build of console/
(``npm run build`` writes it to assets/console inside this package, or GATEWAY_CONSOLE_DIR).

The files are read once at start-up into memory: a request never touches the file system, so no
path a client sends can reach a file outside the build. Hashed assets (``/console/assets/...``)
are immutable and cached for a year; HTML is revalidated on every load (ETag, 304). Every answer
carries the content-security policy below: scripts, styles and API calls from this origin only,
no CDN, no framing. Compressible files are gzipped on first request when the client accepts it."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import structlog

from modelserve_gateway.rest.http import Headers, Request, Send, raw_headers
from modelserve_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""'unsafe-inline' for styles only: Swagger UI and the chart library set style attributes."""
SECURITY_HEADERS: Headers = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
]
NOT_BUILT = "the console is not built: run `make setup` (console/: npm ci && npm run build)"
_COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json"}


@dataclass
class Asset:
    body: bytes
    content_type: str
    cache_control: str
    etag: str
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes | None:
        """The gzip encoding, made once; None when not worth it (binary or tiny)."""
        if len(self.body) < 1024 or not self.content_type.startswith(_COMPRESSIBLE):
            return None
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, 6, mtime=0)
        return self._gzipped


def default_dir() -> Path:
    return Path(str(resources.files("modelserve_gateway") / "assets" / "console"))


def _content_type(path: Path) -> str:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{ctype}; charset=utf-8" if ctype.startswith("text/") or ctype == "application/json" else ctype


def _url_paths(rel: str) -> list[str]:
    """Where a file of the build is served: docs/ at /docs, the rest under /console/."""
    if rel == "docs/index.html":
        return ["/docs", "/docs/", "/docs/index.html"]
    if rel.startswith("docs/"):
        return ["/" + rel]
    if rel == "index.html":
        return ["/console/", "/console/index.html"]
    return ["/console/" + rel]


def load(root: Path, max_age_s: int) -> dict[str, Asset]:
    """Every regular file under ``root`` (no dotfiles, no links), keyed by the URL path."""
    files: dict[str, Asset] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file() or any(p.startswith(".") for p in rel.split("/")):
            continue
        body = path.read_bytes()
        hashed = rel.startswith("assets/")  # Vite names them by content hash
        cache = f"public, max-age={max_age_s}, immutable" if hashed else "no-cache"
        asset = Asset(body, _content_type(path), cache, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        for url in _url_paths(rel):
            files[url] = asset
    return files


class ConsoleAssets:
    """Answers GET/HEAD under /console and /docs from the build loaded at start-up."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.enabled = settings.console_enabled
        root = Path(settings.console_dir) if settings.console_dir else default_dir()
        self.files = load(root, settings.console_cache_max_age_s) if self.enabled else {}
        if self.enabled and "/console/" not in self.files:
            log.warning("console.not_built", directory=str(root))

    @staticmethod
    def matches(path: str) -> bool:
        return path in ("/console", "/docs") or path.startswith(("/console/", "/docs/"))

    def find(self, path: str) -> Asset | None:
        asset = self.files.get(path)
        if asset is None and path.startswith("/console/") and "." not in path.rsplit("/", 1)[1]:
            asset = self.files.get("/console/")  # a client-side route: the app itself
        return asset

    async def serve(self, req: Request, send: Send, base: Headers) -> None:
        headers = base + SECURITY_HEADERS
        if not self.enabled:
            await _send(send, 404, headers + [("content-type", "text/plain; charset=utf-8")], b"not found\n")
            return
        if req.method not in ("GET", "HEAD"):
            await _send(send, 405, headers + [("allow", "GET, HEAD")], b"")
            return
        if req.path == "/console":
            await _send(send, 308, headers + [("location", "/console/")], b"")
            return
        asset = self.find(req.path)
        if asset is None:
            built = "/console/" in self.files
            text = b"not found\n" if built else NOT_BUILT.encode() + b"\n"
            await _send(send, 404, headers + [("content-type", "text/plain; charset=utf-8")], text)
            return
        headers += [("etag", asset.etag), ("cache-control", asset.cache_control), ("vary", "accept-encoding")]
        if asset.etag in req.headers.get("if-none-match", ""):
            await _send(send, 304, headers, b"")
            return
        body = asset.body
        zipped = asset.gzipped() if "gzip" in req.headers.get("accept-encoding", "") else None
        if zipped is not None:
            body = zipped
            headers.append(("content-encoding", "gzip"))
        headers.append(("content-type", asset.content_type))
        await _send(send, 200, headers, body, head=req.method == "HEAD")


async def _send(send: Send, status: int, headers: Headers, body: bytes, *, head: bool = False) -> None:
    raw = raw_headers(headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body})
