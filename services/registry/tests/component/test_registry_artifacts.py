"""UploadModelVersion / DownloadModelVersion over the wire (SQLite and PostgreSQL; the local store,
and one run on a real moto S3 server): content addressing, digest and size checks, limits, quota,
idle timeout, tenancy and code permission, ONNX signatures, the blob sweeper."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from onnx import TensorProto, helper

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.testing.s3server import MotoS3Server
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings

Stub = registry_grpc.RegistryServiceStub
CHUNK = 64 * 1024


def onnx_model(dims: tuple[Any, ...] = ("batch", 3)) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


def upload_messages(
    model: str, data: bytes, backend: str = "onnx", **version: Any
) -> Iterator[pb.UploadModelVersionRequest]:
    size = version.pop("size_bytes", len(data))
    meta = pb.UploadMetadata(
        model=model, model_version=pb.ModelVersion(backend=backend, **version), size_bytes=size
    )
    yield pb.UploadModelVersionRequest(metadata=meta)
    for i in range(0, len(data), CHUNK):
        yield pb.UploadModelVersionRequest(chunk=data[i : i + CHUNK])


async def upload(stub: Stub, model: str, data: bytes, md: Any = None, **version: Any) -> pb.ModelVersion:
    response = await stub.UploadModelVersion(upload_messages(model, data, **version), metadata=md)
    return response.model_version


async def download(stub: Stub, model: str, version: str, md: Any = None) -> tuple[pb.DownloadMetadata, bytes]:
    messages = [
        m
        async for m in stub.DownloadModelVersion(
            pb.DownloadModelVersionRequest(model=model, version=version), metadata=md
        )
    ]
    assert messages[0].WhichOneof("content") == "metadata"
    return messages[0].metadata, b"".join(m.chunk for m in messages[1:])


def blob_files(tmp: Path) -> list[Path]:
    return sorted(p for p in (tmp / "blobs" / "sha256").rglob("*") if p.is_file())


async def fails(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


@asynccontextmanager
async def registry(
    make: Callable[..., RegistrySettings], url: str, tmp: Path, **over: Any
) -> AsyncIterator[Stub]:
    async with running_server(make(url, tmp, **over)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = Stub(channel)
            await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name="acme")))
            await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name="other")))
            await stub.CreateModel(
                pb.CreateModelRequest(model=pb.Model(name="m")), metadata=as_tenant("acme")
            )
            yield stub


async def test_upload_fills_onnx_signature_and_download_returns_the_bytes(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data = onnx_model()
    async with registry(registry_settings, database_url, tmp_path) as stub:
        v = await upload(stub, "m", data, md=as_tenant("acme"), artifact_sha256=sha(data))
        assert (v.version, v.artifact_uri, v.artifact_sha256) == (1, f"blob:sha256:{sha(data)}", sha(data))
        assert v.artifact_size_bytes == len(data)
        assert [(t.name, t.datatype, list(t.shape)) for t in v.inputs] == [("x", "FP32", [-1, 3])]
        assert [(t.name, list(t.shape)) for t in v.outputs] == [("y", [-1, 3])]
        got = await stub.GetModelVersion(pb.GetModelVersionRequest(model="m", version="1"))
        assert got.model_version.artifact_size_bytes == len(data)
        meta, body = await download(stub, "m", "1", md=as_tenant("acme", "read"))
        assert (meta.sha256, meta.size_bytes, meta.file_name, body) == (
            sha(data),
            len(data),
            "model.onnx",
            data,
        )
        code, _ = await fails(download(stub, "m", "1", md=as_tenant("other", "read")))
        assert code is grpc.StatusCode.NOT_FOUND


async def test_upload_contradicting_spec_is_invalid_argument_naming_the_tensor(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    async with registry(registry_settings, database_url, tmp_path) as stub:
        bad = [tensor_pb.TensorSpec(name="x", datatype="INT64", shape=[-1, 3])]
        code, details = await fails(upload(stub, "m", onnx_model(), md=as_tenant("acme"), inputs=bad))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details == "input tensor 'x': datatype INT64 contradicts the ONNX graph's FP32"
        wrong_shape = [tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 4])]
        code, details = await fails(
            upload(stub, "m", onnx_model(), md=as_tenant("acme"), outputs=wrong_shape)
        )
        assert details == "output tensor 'y': shape [-1, 4] contradicts the ONNX graph's [-1, 3]"
        ok = [tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[8, 3])]
        v = await upload(stub, "m", onnx_model(), md=as_tenant("acme"), inputs=ok)
        assert [list(t.shape) for t in v.inputs] == [[8, 3]]


async def test_upload_digest_or_size_mismatch_stores_nothing(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data = os.urandom(200_000)
    async with registry(registry_settings, database_url, tmp_path) as stub:
        code, details = await fails(upload(stub, "m", data, backend="triton", artifact_sha256="a" * 64))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "sha256 mismatch" in details
        code, details = await fails(upload(stub, "m", data, backend="triton", size_bytes=len(data) + 1))
        assert details == f"artifact size mismatch: declared {len(data) + 1} bytes, received {len(data)}"
        code, details = await fails(stub.UploadModelVersion(iter([pb.UploadModelVersionRequest(chunk=b"x")])))
        assert (code, details) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "the first message of an upload must carry its metadata",
        )
        listed = await stub.ListModelVersions(pb.ListModelVersionsRequest(model="m"))
        assert list(listed.model_versions) == []
    assert blob_files(tmp_path) == []


async def test_upload_eight_concurrent_same_bytes_make_one_blob_and_eight_versions(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data = os.urandom(300_000)
    async with registry(registry_settings, database_url, tmp_path) as stub:
        versions = await asyncio.gather(
            *(upload(stub, "m", data, backend="triton", md=as_tenant("acme")) for _ in range(8))
        )
        assert sorted(v.version for v in versions) == list(range(1, 9))
        assert {v.artifact_uri for v in versions} == {f"blob:sha256:{sha(data)}"}
    files = blob_files(tmp_path)
    assert len(files) == 1 and files[0].read_bytes() == data


async def test_upload_limits_quota_and_idle_timeout(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    async with registry(
        registry_settings,
        database_url,
        tmp_path,
        max_artifact_bytes=250_000,
        tenant_storage_quota_bytes=300_000,
        upload_idle_timeout_s=0.5,
    ) as stub:
        code, details = await fails(upload(stub, "m", os.urandom(250_001), backend="triton", size_bytes=0))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == "artifact larger than the limit of 250000 bytes (more than 196608 bytes received)"
        await upload(stub, "m", os.urandom(200_000), backend="triton", md=as_tenant("acme"))
        code, details = await fails(
            upload(stub, "m", os.urandom(150_000), backend="triton", md=as_tenant("acme"), size_bytes=0)
        )
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (
            details == "tenant 'acme' storage quota exceeded: 200000 bytes used of 300000, "
            "upload needs at least 100001 more"
        )

        async def stalled() -> AsyncIterator[pb.UploadModelVersionRequest]:
            for m in upload_messages("m", b"abc", backend="triton"):
                yield m
            await asyncio.sleep(5)

        started = time.monotonic()
        code, details = await fails(stub.UploadModelVersion(stalled()))
        assert (code, details) == (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "upload idle for more than 0.5 s (REGISTRY_UPLOAD_IDLE_TIMEOUT_S)",
        )
        assert time.monotonic() - started < 4


async def test_upload_tenancy_and_code_permission(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    async with registry(registry_settings, database_url, tmp_path) as stub:
        code, details = await fails(upload(stub, "m", b"abc", backend="triton", md=as_tenant("other")))
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, "model 'm' not found")
        code, _ = await fails(upload(stub, "m", b"abc", backend="triton", md=as_tenant("acme", "read")))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        code, details = await fails(upload(stub, "m", b"abc", backend="python", md=as_tenant("acme")))
        assert code is grpc.StatusCode.PERMISSION_DENIED and "code_execution_allowed" in details
    assert blob_files(tmp_path) == []


async def test_deleted_version_blob_is_swept_after_grace(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data, kept = os.urandom(1000), os.urandom(1000)
    async with registry(
        registry_settings, database_url, tmp_path, blob_grace_s=0, blob_sweep_interval_s=0.1
    ) as stub:
        await upload(stub, "m", data, backend="triton")
        await upload(stub, "m", kept, backend="triton")
        await upload(stub, "m", kept, backend="triton")
        assert len(blob_files(tmp_path)) == 2
        await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="1"))
        await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="2"))
        deadline = time.monotonic() + 10
        while len(blob_files(tmp_path)) != 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert [p.name for p in blob_files(tmp_path)] == [sha(kept)]
        _, body = await download(stub, "m", "3")
        assert body == kept


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_upload_to_s3_store_and_download(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data = onnx_model((2, 3))
    with MotoS3Server() as s3:
        s3.create_bucket("models")
        artifacts = {
            "kind": "s3",
            "s3": {
                "bucket": "models",
                "prefix": "p/",
                "endpoint_url": s3.endpoint_url,
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
        }
        async with registry(registry_settings, database_url, tmp_path, artifacts=artifacts) as stub:
            v = await upload(stub, "m", data)
            keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="models")["Contents"]]
            assert keys == [f"p/sha256/{sha(data)}"]
            assert v.artifact_uri == f"blob:sha256:{sha(data)}"
            _, body = await download(stub, "m", "1")
            assert body == data
        async with registry(
            registry_settings,
            f"sqlite:///{tmp_path}/again.db",
            tmp_path / "again",
            artifacts={**artifacts, "s3": {**artifacts["s3"], "bucket": "nope"}},
        ) as stub:
            code, details = await fails(upload(stub, "m", data))
            assert code is grpc.StatusCode.FAILED_PRECONDITION
            assert details.endswith("bucket 'nope' does not exist") and "S3 store s3://nope/p/" in details


async def test_tenant_storage_quota_and_use_on_the_tenant(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    data = os.urandom(100_000)
    async with registry(registry_settings, database_url, tmp_path, tenant_storage_quota_bytes=10**9) as stub:
        await upload(stub, "m", data, backend="triton", md=as_tenant("acme"))
        await upload(stub, "m", data, backend="triton", md=as_tenant("acme"))  # same blob: counted once
        got = await stub.GetTenant(pb.GetTenantRequest(tenant="acme"), metadata=as_tenant("acme", "read"))
        assert (got.tenant.storage_used_bytes, got.tenant.storage_quota_bytes) == (100_000, 0)
        changed = await stub.UpdateTenant(
            pb.UpdateTenantRequest(
                tenant=pb.Tenant(name="acme", storage_quota_bytes=150_000),
                update_mask=FieldMask(paths=["storage_quota_bytes"]),
            )
        )
        assert changed.tenant.storage_quota_bytes == 150_000
        code, details = await fails(
            upload(stub, "m", os.urandom(60_000), backend="triton", md=as_tenant("acme"))
        )
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == (
            "tenant 'acme' storage quota exceeded: 100000 bytes used of 150000, "
            "upload needs at least 50001 more"
        )
        code, details = await fails(
            stub.UpdateTenant(
                pb.UpdateTenantRequest(
                    tenant=pb.Tenant(name="acme", storage_quota_bytes=-1),
                    update_mask=FieldMask(paths=["storage_quota_bytes"]),
                )
            )
        )
        assert (code, details) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage_quota_bytes must be >= 0 (0: the registry default), got -1",
        )
        await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="1"))
        await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="2"))
        got = await stub.GetTenant(pb.GetTenantRequest(tenant="acme"))
        assert got.tenant.storage_used_bytes == 100_000  # the bytes still count until swept
