"""The gateway serves the console build at /console and the OpenAPI viewer at /docs: from memory,
with caching headers, ETags, gzip and a content-security policy; nothing outside the build is
reachable; the API behind it still needs credentials."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from modelserve_gateway.console import CSP, NOT_BUILT, default_dir

APP_JS = "export const x = 1;\n" * 400  # big enough to be gzipped


@pytest.fixture
def build(tmp_path: Path) -> Path:
    root = tmp_path / "build"
    (root / "assets").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "index.html").write_text(
        '<!doctype html><script type="module" src="/console/assets/app-1a2b.js"></script>'
    )
    (root / "assets" / "app-1a2b.js").write_text(APP_JS)
    (root / "docs" / "index.html").write_text("<title>API reference</title>")
    (root / "docs" / "init.js").write_text("init()")
    (root / ".gitignore").write_text("*\n")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "assets" / "link.js").symlink_to(tmp_path / "secret.txt")
    return root


async def test_console_pages_assets_and_headers(make_gateway, build: Path) -> None:
    async with make_gateway(console_dir=str(build), console_cache_max_age_s=1234) as gw:
        http = gw.http
        r = await http.get("/console")
        assert r.status_code == 308 and r.headers["location"] == "/console/"
        page = await http.get("/console/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert "connect-src 'self'" in CSP and "script-src 'self';" in CSP
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["x-content-type-options"] == "nosniff"
        etag = page.headers["etag"]
        again = await http.get("/console/", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        # a client-side route answers the app; a missing file does not
        assert (await http.get("/console/models/iris")).text == page.text
        assert (await http.get("/console/assets/nope.js")).status_code == 404
        js = await http.get("/console/assets/app-1a2b.js", headers={"accept-encoding": "gzip"})
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert js.headers["cache-control"] == "public, max-age=1234, immutable"
        assert js.headers["content-encoding"] == "gzip" and js.text == APP_JS  # httpx decodes
        assert int(js.headers["content-length"]) < len(APP_JS) // 4
        plain = await http.get("/console/assets/app-1a2b.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.text == APP_JS
        head = await http.head("/console/assets/app-1a2b.js", headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(APP_JS))
        assert (await http.post("/console/", content=b"x")).status_code == 405
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "API reference" in docs.text
        assert docs.headers["content-security-policy"] == CSP
        assert (await http.get("/docs/init.js")).text == "init()"


@pytest.mark.parametrize(
    "path",
    [
        "/console/../secret.txt",
        "/console/%2e%2e/secret.txt",
        "/console/assets/..%2f..%2fsecret.txt",
        "/console/assets/link.js",  # a link out of the build is never loaded
        "/console/.gitignore",
        "/docs/../build/index.html",
    ],
)
async def test_nothing_outside_the_build_is_reachable(make_gateway, build: Path, path: str) -> None:
    async with make_gateway(console_dir=str(build)) as gw:
        r = await gw.http.get(path)
        assert "top secret" not in r.text and r.text != "*\n"
        assert r.status_code == 404 or r.text == (build / "index.html").read_text()


async def test_console_is_public_but_the_api_is_not(make_gateway, build: Path) -> None:
    async with make_gateway(console_dir=str(build), auth_enabled=True, admin_api_key="console-admin") as gw:
        assert (await gw.http.get("/console/")).status_code == 200
        assert (await gw.http.get("/docs")).status_code == 200
        assert (await gw.http.get("/v1/models/x")).status_code == 401
        ok = await gw.http.get("/v1/models/x", headers={"x-api-key": "console-admin"})
        assert ok.status_code == 200


async def test_disabled_and_not_built(make_gateway, build: Path, tmp_path: Path) -> None:
    async with make_gateway(console_dir=str(build), console_enabled=False) as gw:
        assert (await gw.http.get("/console/")).status_code == 404
        assert (await gw.http.get("/docs")).status_code == 404
    empty = tmp_path / "empty"
    empty.mkdir()
    async with make_gateway(console_dir=str(empty)) as gw:
        r = await gw.http.get("/console/")
        assert r.status_code == 404 and NOT_BUILT in r.text


def _real_build() -> Path:
    root = default_dir()
    if not (root / "index.html").is_file():
        pytest.skip(f"{NOT_BUILT} ({root} is empty)")
    return root


async def test_the_real_build_is_local_only_and_small(gateway) -> None:
    root = _real_build()
    page = await gateway.http.get("/console/")
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/console/assets/") for ref in refs), refs
    total_js = 0
    for ref in refs:
        r = await gateway.http.get(ref, headers={"accept-encoding": "gzip"})
        assert r.status_code == 200, ref
        if ref.endswith(".js"):
            total_js += len(gzip.compress(r.content))
    for extra in (root / "assets").glob("*.js"):
        total_js += 0 if f"/console/assets/{extra.name}" in refs else len(gzip.compress(extra.read_bytes()))
    assert 0 < total_js < 400 * 1024


async def test_docs_is_swagger_ui_from_local_assets(gateway) -> None:
    _real_build()
    r = await gateway.http.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs and all(ref.startswith("/docs/") for ref in refs), refs  # no CDN
    for ref in refs:
        assert (await gateway.http.get(ref)).status_code == 200, ref
    init = await gateway.http.get("/docs/init.js")
    assert 'url: "/openapi.json"' in init.text and "SwaggerUIBundle" in init.text
    assert (await gateway.http.get("/openapi.json")).json()["openapi"] == "3.1.0"
