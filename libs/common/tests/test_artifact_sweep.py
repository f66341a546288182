"""Orphans of a crashed upload: a process that is uploading an artifact is killed (SIGKILL) mid-way;
nothing of it is visible as a blob, and the sweeper removes what it left (the incomplete S3
multipart upload, the local temporary file) once older than the timeout. Real processes, the real
moto S3 server over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelserve_common.artifact_store import (
    MIN_S3_PART_BYTES,
    LocalArtifactStore,
    S3ArtifactStore,
    S3StoreSettings,
)
from modelserve_common.testing.s3server import MotoS3Server

MiB = 1024 * 1024

# The uploader: streams two 6 MiB chunks (one 5 MiB part sent, the rest pending), says so on stdout,
# then waits for more bytes that never come, as a registry does while its client is still sending.
UPLOADER = """
import asyncio, os, sys
from modelserve_common.artifact_store import LocalArtifactStore, S3ArtifactStore, S3StoreSettings

async def chunks():
    yield os.urandom(6 * 1024 * 1024)
    yield os.urandom(6 * 1024 * 1024)
    print("streamed", flush=True)
    await asyncio.sleep(3600)
    yield b""

async def main():
    kind, where, expected = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "local":
        store = LocalArtifactStore(where)
    else:
        store = S3ArtifactStore(S3StoreSettings.model_validate_json(where))
    await store.put(chunks(), max_bytes=1 << 30, expected_sha256=expected)

asyncio.run(main())
"""


def upload_then_kill(kind: str, where: str, expected_sha256: str, ready: Callable[[], bool]) -> None:
    """Run the uploader until ``ready()`` is true, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, kind, where, expected_sha256],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"streamed\n", "the uploader died before streaming"
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline, "the uploader sent no part within 60 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        yield server


def settings(server: MotoS3Server, bucket: str) -> S3StoreSettings:
    return S3StoreSettings(
        bucket=bucket,
        prefix="ms/",
        endpoint_url=server.endpoint_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        part_size_bytes=MIN_S3_PART_BYTES,
        max_attempts=1,
    )


def open_uploads(server: MotoS3Server, bucket: str) -> list[dict[str, str]]:
    return list(server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def parts_sent(server: MotoS3Server, bucket: str) -> bool:
    ups = open_uploads(server, bucket)
    return bool(ups) and bool(
        server.client().list_parts(Bucket=bucket, Key=ups[0]["Key"], UploadId=ups[0]["UploadId"]).get("Parts")
    )


def objects(server: MotoS3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


async def test_s3_upload_killed_mid_way_leaves_a_multipart_upload_that_the_sweeper_aborts(
    moto: MotoS3Server,
) -> None:
    moto.create_bucket("b-killed")
    s = settings(moto, "b-killed")
    await asyncio.to_thread(
        upload_then_kill, "s3", s.model_dump_json(), "", lambda: parts_sent(moto, "b-killed")
    )
    uploads = open_uploads(moto, "b-killed")
    assert [u["Key"].split("/")[1] for u in uploads] == ["tmp"]  # the digest was not known: temporary key
    assert objects(moto, "b-killed") == []  # nothing visible
    store = S3ArtifactStore(s)
    assert await store.sweep_temporary(3600) == 0  # younger than the timeout: kept
    assert len(open_uploads(moto, "b-killed")) == 1
    assert await store.sweep_temporary(0) == 1
    assert open_uploads(moto, "b-killed") == []
    assert objects(moto, "b-killed") == []


async def test_s3_upload_to_its_content_address_killed_mid_way_is_swept_and_never_visible(
    moto: MotoS3Server,
) -> None:
    moto.create_bucket("b-killed-sha")
    s = settings(moto, "b-killed-sha")
    digest = "ab" * 32  # declared: the parts go straight to the content address
    await asyncio.to_thread(
        upload_then_kill, "s3", s.model_dump_json(), digest, lambda: parts_sent(moto, "b-killed-sha")
    )
    assert [u["Key"] for u in open_uploads(moto, "b-killed-sha")] == [f"ms/sha256/{digest}"]
    store = S3ArtifactStore(s)
    assert await store.stat(digest) is None  # an incomplete multipart upload is no object
    # (moto reports a fixed Initiated time in 2010, so only the timeout 0 case is meaningful here)
    assert await store.sweep_temporary(0) == 1
    assert open_uploads(moto, "b-killed-sha") == []
    assert objects(moto, "b-killed-sha") == []


async def test_local_upload_killed_mid_way_leaves_a_temporary_file_that_the_sweeper_removes(
    tmp_path: Path,
) -> None:
    tmp = tmp_path / "tmp"

    def written() -> bool:
        return tmp.is_dir() and any(p.stat().st_size >= 12 * MiB for p in tmp.iterdir())

    await asyncio.to_thread(upload_then_kill, "local", str(tmp_path), "", written)
    store = LocalArtifactStore(tmp_path)
    assert [p.suffix for p in tmp.iterdir()] == [".part"]
    assert [p for p in (tmp_path / "sha256").rglob("*") if p.is_file()] == []
    assert await store.sweep_temporary(3600) == 0
    assert await store.sweep_temporary(0) == 1
    assert list(tmp.iterdir()) == []
