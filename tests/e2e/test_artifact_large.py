"""A 200 MiB artifact end to end through the REAL gateway and registry (local artifact store), both
as processes: REST upload with a chunked body, download, same sha256; neither process holds the
artifact in memory: the growth of each one's peak resident set (VmHWM) stays under 96 MiB
(issue 15). A platform-admin upload of a ``python`` version: an ``onnx`` single file would have its
signature read, which holds the file in memory by design (REGISTRY_MAX_SIGNATURE_BYTES)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve_common.testing import ServiceProcess, free_port

pytestmark = [pytest.mark.e2e]
ADMIN = "e2e-large-admin"
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}
SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 96 * 1024 * 1024


def peak_rss(proc: ServiceProcess) -> int:
    """The process's peak resident set so far (VmHWM), in bytes."""
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def artifact() -> Iterator[bytes]:
    """SIZE deterministic, incompressible bytes, 1 MiB at a time (never all in memory)."""
    base = random.Random(15).randbytes(CHUNK)
    for i in range(SIZE // CHUNK):
        yield i.to_bytes(8, "big") + base[8:]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, list[ServiceProcess]]]:
    tmp = tmp_path_factory.mktemp("large")
    ports = {n: free_port() for n in ("registry", "gateway", "http", "model_server")}
    common = {"PYTHONWARNINGS": "ignore"}
    specs = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp / "reg"),
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_HTTP_PORT": str(ports["http"]),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": f"127.0.0.1:{ports['registry']}",
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{ports['model_server']}",  # not started: unused
            "GATEWAY_ADMIN_API_KEY": ADMIN,
        },
    }
    procs = [
        ServiceProcess(f"modelserve_{n}", {**common, **env}, ports[n], cwd=tmp) for n, env in specs.items()
    ]
    try:
        for p in procs:
            p.start(timeout=90)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['http']}", timeout=120) as http:
            yield http, procs
    finally:
        for p in procs:
            p.stop()


def test_200_mib_upload_and_download_through_the_gateway_in_bounded_memory(
    suite: tuple[httpx.Client, list[ServiceProcess]],
) -> None:
    http, procs = suite
    expected = hashlib.sha256()
    for chunk in artifact():
        expected.update(chunk)
    digest = expected.hexdigest()
    r = http.post("/v1/models", json={"name": "big"}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    before = [peak_rss(p) for p in procs]

    r = http.post(
        f"/v1/models/big/versions:upload?backend=python&sha256={digest}", content=artifact(), headers=ADMIN_H
    )
    assert r.status_code == 200, r.text
    version = r.json()["modelVersion"]
    assert version["artifactUri"] == f"blob:sha256:{digest}" and version["artifactSizeBytes"] == str(SIZE)

    got, size = hashlib.sha256(), 0
    with http.stream("GET", f"/v1/models/big/versions/{version['version']}:download", headers=ADMIN_H) as r:
        assert r.status_code == 200
        assert r.headers["x-artifact-sha256"] == digest
        for chunk in r.iter_bytes():
            got.update(chunk)
            size += len(chunk)
    assert (size, got.hexdigest()) == (SIZE, digest)

    growth = {p.module: peak_rss(p) - b for p, b in zip(procs, before, strict=True)}
    assert all(g < MAX_GROWTH for g in growth.values()), growth
