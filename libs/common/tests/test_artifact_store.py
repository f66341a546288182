"""Artifact stores: the local folder store and the S3 store against a real moto server (HTTP,
real signatures) started on a free port."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from modelserve_common.artifact_store import (
    MIN_S3_PART_BYTES,
    LocalArtifactStore,
    S3ArtifactStore,
    S3StoreSettings,
    parse_blob_uri,
)
from modelserve_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from modelserve_common.testing.launcher import free_port
from modelserve_common.testing.s3server import MotoS3Server

MiB = 1024 * 1024


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def read_all(store: LocalArtifactStore | S3ArtifactStore, sha: str) -> bytes:
    return b"".join([c async for c in store.read(sha)])


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- local ------------------------------------------------------------------------------------


async def test_local_put_is_content_addressed_and_reads_back(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    blob = await store.put(
        stream(b"abc", b"def"), max_bytes=100, expected_sha256=sha(b"abcdef"), expected_size=6
    )
    assert (blob.sha256, blob.size) == (sha(b"abcdef"), 6)
    assert parse_blob_uri(blob.uri) == blob.sha256
    assert await store.stat(blob.sha256) == 6
    assert await read_all(store, blob.sha256) == b"abcdef"
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_local_concurrent_same_bytes_make_one_blob(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    data = os.urandom(300_000)
    blobs = await asyncio.gather(
        *(store.put(stream(data[:1000], data[1000:]), max_bytes=MiB) for _ in range(8))
    )
    assert {b.sha256 for b in blobs} == {sha(data)}
    files = files_under(tmp_path / "sha256")
    assert len(files) == 1 and files[0].read_bytes() == data
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"expected_sha256": "0" * 64}, InvalidArgument, "sha256 mismatch"),
        ({"expected_size": 5}, InvalidArgument, "size mismatch: declared 5 bytes, received at least 6"),
        ({"expected_size": 100}, InvalidArgument, "size mismatch: declared 100 bytes, received 12"),
        ({"max_bytes": 10}, ResourceExhausted, "larger than the limit of 10 bytes"),
        ({"expected_sha256": "XYZ"}, InvalidArgument, "expected sha256 must be 64 lowercase hex"),
    ],
)
async def test_local_refused_upload_stores_nothing(
    tmp_path: Path, kwargs: dict, error: type, text: str
) -> None:
    store = LocalArtifactStore(tmp_path)
    args = {"max_bytes": 100, **kwargs}
    with pytest.raises(error, match=text):
        await store.put(stream(b"abcdef", b"ghijkl"), **args)
    assert files_under(tmp_path) == []
    assert await store.stat(sha(b"abcdefghijkl")) is None


async def test_local_missing_blob_is_not_found_and_delete_is_idempotent(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(NotFound, match=f"local store {tmp_path}"):
        await read_all(store, "a" * 64)
    blob = await store.put(stream(b"x"), max_bytes=10)
    await store.delete(blob.sha256)
    await store.delete(blob.sha256)
    assert await store.stat(blob.sha256) is None


async def test_local_sweeper_removes_only_old_temporary_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    old, young = tmp_path / "tmp" / "old.part", tmp_path / "tmp" / "young.part"
    old.write_bytes(b"1")
    young.write_bytes(b"2")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert await store.sweep_temporary(3600) == 1
    assert not old.exists() and young.exists()


# --- S3 (moto server) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        yield server


def s3_settings(server: MotoS3Server, bucket: str, **extra: object) -> S3StoreSettings:
    values: dict[str, object] = {
        "bucket": bucket,
        "prefix": "ms/",
        "endpoint_url": server.endpoint_url,
        "region": "us-east-1",
        "access_key_id": server.credentials["access_key_id"],
        "secret_access_key": server.credentials["secret_access_key"],
        "part_size_bytes": MIN_S3_PART_BYTES,
        "max_attempts": 1,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 5.0,
    }
    values.update(extra)
    return S3StoreSettings.model_validate(values)


def bucket_keys(server: MotoS3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(server: MotoS3Server, bucket: str) -> list[str]:
    return [u["Key"] for u in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def test_s3_small_and_multipart_uploads_read_back(moto: MotoS3Server) -> None:
    moto.create_bucket("b-multi")
    store = S3ArtifactStore(s3_settings(moto, "b-multi"))
    small = await store.put(stream(b"hello"), max_bytes=100)
    big = os.urandom(12 * MiB + 123)
    chunks = [big[i : i + 700_000] for i in range(0, len(big), 700_000)]
    blob = await store.put(
        stream(*chunks), max_bytes=64 * MiB, expected_sha256=sha(big), expected_size=len(big)
    )
    assert blob.sha256 == sha(big)
    assert sorted(bucket_keys(moto, "b-multi")) == sorted(
        [f"ms/sha256/{small.sha256}", f"ms/sha256/{blob.sha256}"]
    )
    head = moto.client().head_object(Bucket="b-multi", Key=f"ms/sha256/{blob.sha256}")
    assert head["ContentLength"] == len(big)
    assert await store.stat(blob.sha256) == len(big)
    assert await read_all(store, blob.sha256) == big
    assert open_uploads(moto, "b-multi") == []
    await store.delete(small.sha256)
    assert await store.stat(small.sha256) is None


async def test_s3_digest_mismatch_in_multipart_leaves_nothing(moto: MotoS3Server) -> None:
    moto.create_bucket("b-mismatch")
    store = S3ArtifactStore(s3_settings(moto, "b-mismatch"))
    data = os.urandom(11 * MiB)
    with pytest.raises(InvalidArgument, match="sha256 mismatch"):
        await store.put(
            stream(data[: 6 * MiB], data[6 * MiB :]), max_bytes=64 * MiB, expected_sha256="1" * 64
        )
    with pytest.raises(ResourceExhausted, match="limit of 7340032 bytes"):
        await store.put(stream(data[: 6 * MiB], data[6 * MiB :]), max_bytes=7 * MiB)
    assert bucket_keys(moto, "b-mismatch") == []
    assert open_uploads(moto, "b-mismatch") == []


async def test_s3_missing_bucket_is_failed_precondition_naming_the_store(moto: MotoS3Server) -> None:
    store = S3ArtifactStore(s3_settings(moto, "no-such-bucket"))
    with pytest.raises(FailedPrecondition) as exc:
        await store.put(stream(b"x"), max_bytes=10)
    assert exc.value.message == (
        f"S3 store s3://no-such-bucket/ms/ at {moto.endpoint_url}: uploading: "
        "bucket 'no-such-bucket' does not exist"
    )
    with pytest.raises(FailedPrecondition, match="does not exist"):
        await store.check()


async def test_s3_wrong_credentials_are_permission_denied() -> None:
    with MotoS3Server(enforce_auth=True) as server:
        server.create_bucket("b-auth")
        good = S3ArtifactStore(s3_settings(server, "b-auth"))
        blob = await good.put(stream(b"ok"), max_bytes=10)
        bad = S3ArtifactStore(s3_settings(server, "b-auth", secret_access_key="wrong"))
        with pytest.raises(PermissionDenied) as exc:
            await bad.put(stream(b"x"), max_bytes=10)
        assert "S3 store s3://b-auth/ms/" in exc.value.message
        assert "credentials refused (SignatureDoesNotMatch)" in exc.value.message
        unknown = S3ArtifactStore(s3_settings(server, "b-auth", access_key_id="AKIANOPE"))
        with pytest.raises(PermissionDenied, match="credentials refused"):
            await read_all(unknown, blob.sha256)


class CuttableProxy:
    """A TCP proxy in front of the S3 server whose connections can be cut at once."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


async def test_s3_store_gone_mid_upload_leaves_nothing_visible_and_retry_works(moto: MotoS3Server) -> None:
    moto.create_bucket("b-cut")
    proxy = CuttableProxy(moto.port)
    via_proxy = S3ArtifactStore(s3_settings(moto, "b-cut", endpoint_url=f"http://127.0.0.1:{proxy.port}"))
    data = os.urandom(12 * MiB)

    async def cut_after_first_part() -> AsyncIterator[bytes]:
        yield data[: 6 * MiB]  # part 1 (5 MiB) is sent before the next chunk is asked for
        proxy.cut()
        yield data[6 * MiB :]

    with pytest.raises(Unavailable) as exc:
        await via_proxy.put(cut_after_first_part(), max_bytes=64 * MiB)
    assert exc.value.message.startswith(
        f"S3 store s3://b-cut/ms/ at http://127.0.0.1:{proxy.port}: uploading part"
    )
    assert "store unreachable" in exc.value.message
    assert bucket_keys(moto, "b-cut") == []  # nothing visible: the multipart upload never completed
    assert len(open_uploads(moto, "b-cut")) == 1  # its abort could not get through either

    direct = S3ArtifactStore(s3_settings(moto, "b-cut"))
    assert await direct.sweep_temporary(3600) == 0
    assert await direct.sweep_temporary(0) == 1
    assert open_uploads(moto, "b-cut") == []
    blob = await direct.put(stream(data), max_bytes=64 * MiB, expected_sha256=sha(data))
    assert bucket_keys(moto, "b-cut") == [f"ms/sha256/{blob.sha256}"]


# botocore/urllib3 drop the socket of the connection the killed server cut mid-request without
# closing it (third-party, failure path only); the test collects it itself so the warning stays here.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
async def test_s3_server_stopped_mid_upload_is_unavailable_then_retry_works() -> None:
    server = MotoS3Server().start()
    try:
        server.create_bucket("b-stop")
        store = S3ArtifactStore(s3_settings(server, "b-stop"))
        data = os.urandom(11 * MiB)

        async def stop_after_first_part() -> AsyncIterator[bytes]:
            yield data[: 6 * MiB]
            server.stop()
            yield data[6 * MiB :]

        with pytest.raises(Unavailable, match="store unreachable"):
            await store.put(stop_after_first_part(), max_bytes=64 * MiB)
        server.start()  # same port, empty state
        server.create_bucket("b-stop")
        blob = await store.put(stream(data), max_bytes=64 * MiB)
        assert await read_all(store, blob.sha256) == data
        assert bucket_keys(server, "b-stop") == [f"ms/sha256/{blob.sha256}"]
    finally:
        server.stop()
        gc.collect()


async def test_s3_parts_in_flight_with_uneven_chunks_store_the_exact_bytes(moto: MotoS3Server) -> None:
    moto.create_bucket("b-flight")
    store = S3ArtifactStore(s3_settings(moto, "b-flight", parts_in_flight=3))
    data = os.urandom(23 * MiB + 7)
    sizes = [1, 3 * MiB + 5, 7 * MiB, 11, 64 * 1024]
    chunks, offset, i = [], 0, 0
    while offset < len(data):
        chunks.append(data[offset : offset + sizes[i % len(sizes)]])
        offset += sizes[i % len(sizes)]
        i += 1
    declared = await store.put(stream(*chunks), max_bytes=64 * MiB, expected_sha256=sha(data))
    undeclared = await store.put(stream(*chunks), max_bytes=64 * MiB)  # temporary key, then copied
    assert declared == undeclared
    assert await read_all(store, declared.sha256) == data
    assert bucket_keys(moto, "b-flight") == [f"ms/sha256/{declared.sha256}"]  # no temporary key left
    assert open_uploads(moto, "b-flight") == []


async def test_s3_declared_digest_of_a_stored_blob_verifies_the_stream_and_keeps_the_blob(
    moto: MotoS3Server,
) -> None:
    moto.create_bucket("b-dedup")
    store = S3ArtifactStore(s3_settings(moto, "b-dedup"))
    data = os.urandom(6 * MiB)
    blob = await store.put(stream(data), max_bytes=64 * MiB)
    again = await store.put(stream(data[:MiB], data[MiB:]), max_bytes=64 * MiB, expected_sha256=blob.sha256)
    assert again == blob
    with pytest.raises(InvalidArgument, match="sha256 mismatch"):  # other bytes claiming its digest
        await store.put(stream(os.urandom(6 * MiB)), max_bytes=64 * MiB, expected_sha256=blob.sha256)
    with pytest.raises(ResourceExhausted):
        await store.put(stream(data), max_bytes=MiB, expected_sha256=blob.sha256)
    assert await read_all(store, blob.sha256) == data  # untouched
    assert open_uploads(moto, "b-dedup") == []


def test_s3_part_settings_are_enforced() -> None:
    with pytest.raises(ValueError, match="part_size_bytes"):
        S3StoreSettings(bucket="b", part_size_bytes=MIN_S3_PART_BYTES - 1)
    with pytest.raises(ValueError, match="parts_in_flight"):
        S3StoreSettings(bucket="b", parts_in_flight=0)
    with pytest.raises(ValueError, match="parts_in_flight"):
        S3StoreSettings(bucket="b", parts_in_flight=17)
