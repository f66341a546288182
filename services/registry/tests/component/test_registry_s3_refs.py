"""Versions referencing an existing S3 object (s3://bucket/key + artifact_sha256) against a real
moto server: the allowed-bucket rule, and DownloadModelVersion's verified stream that turns a
version whose object does not match its digest FAILED (issue 15)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.testing.s3server import MotoS3Server
from modelserve_registry.s3_refs import DIGEST_MISMATCH, parse_allowed, parse_s3_uri
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings

Stub = registry_grpc.RegistryServiceStub
TENANT = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "read,write"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_store(s3: MotoS3Server) -> dict[str, Any]:
    return {
        "kind": "local",
        "s3": {
            "endpoint_url": s3.endpoint_url,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
        },
    }


@asynccontextmanager
async def registry(make: Callable[..., RegistrySettings], tmp: Path, **over: Any) -> AsyncIterator[Stub]:
    async with running_server(make(f"sqlite:///{tmp}/registry.db", tmp, **over)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = Stub(channel)
            await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name="acme")))
            await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")), metadata=TENANT)
            yield stub


async def create(stub: Stub, uri: str, digest: str) -> pb.ModelVersion:
    version = pb.ModelVersion(backend="onnx", artifact_uri=uri, artifact_sha256=digest)
    response = await stub.CreateModelVersion(
        pb.CreateModelVersionRequest(model="m", model_version=version), metadata=TENANT
    )
    return response.model_version


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def download(stub: Stub, version: str) -> bytes:
    request = pb.DownloadModelVersionRequest(model="m", version=version)
    messages = [m async for m in stub.DownloadModelVersion(request, metadata=TENANT)]
    assert messages[0].WhichOneof("content") == "metadata"
    body = b"".join(m.chunk for m in messages[1:])
    assert messages[0].metadata.size_bytes == len(body)  # the REST download's Content-Length
    return body


def test_uri_and_setting_parsing() -> None:
    assert parse_s3_uri("s3://refs/a/b.onnx") == ("refs", "a/b.onnx")
    assert parse_allowed(" refs , s3://other/team/ ,") == (("refs", ""), ("other", "team/"))
    with pytest.raises(ValueError, match="REGISTRY_ARTIFACT_S3_ALLOWED"):
        parse_allowed("Bad_Bucket")


async def test_s3_reference_disabled_by_default(tmp_path: Path, registry_settings: Any) -> None:
    async with registry(registry_settings, tmp_path) as stub:
        code, details = await refused(create(stub, "s3://refs/m.onnx", sha(b"x")))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "REGISTRY_ARTIFACT_S3_ALLOWED is empty" in details


async def test_s3_reference_rules_download_and_digest_mismatch(
    tmp_path: Path, registry_settings: Any
) -> None:
    good, other = b"model bytes " * 10_000, b"not the model" * 200_000  # other: several read chunks
    with MotoS3Server() as s3:
        s3.create_bucket("refs")
        client = s3.client()
        client.put_object(Bucket="refs", Key="ok/m.onnx", Body=good)
        client.put_object(Bucket="refs", Key="ok/swapped.onnx", Body=other)
        client.put_object(Bucket="refs", Key="elsewhere/m.onnx", Body=good)
        over = {"artifacts": s3_store(s3), "artifact_s3_allowed": "refs/ok"}
        async with registry(registry_settings, tmp_path, **over) as stub:
            for uri, digest, rule in [
                ("s3://refs/elsewhere/m.onnx", sha(good), "not under a bucket or prefix"),
                ("s3://nope/ok/m.onnx", sha(good), "not under a bucket or prefix"),
                ("s3://refs/ok/m.onnx", "", "artifact_sha256"),
                ("s3://refs/ok/../elsewhere/m.onnx", sha(good), "'..' key segment"),
                ("s3://refs/ok/", sha(good), "object key"),
            ]:
                code, details = await refused(create(stub, uri, digest))
                assert code is grpc.StatusCode.INVALID_ARGUMENT, uri
                assert rule in details, (uri, details)

            v1 = await create(stub, "s3://refs/ok/m.onnx", sha(good))
            assert await download(stub, str(v1.version)) == good
            got = (
                await stub.GetModelVersion(
                    pb.GetModelVersionRequest(model="m", version=str(v1.version)), metadata=TENANT
                )
            ).model_version
            assert pb.ModelVersion.Status.Name(got.status) != "STATUS_FAILED"

            v2 = await create(stub, "s3://refs/ok/swapped.onnx", sha(good))
            code, details = await refused(download(stub, str(v2.version)))
            assert code is grpc.StatusCode.DATA_LOSS
            assert details == DIGEST_MISMATCH
            got = (
                await stub.GetModelVersion(
                    pb.GetModelVersionRequest(model="m", version=str(v2.version)), metadata=TENANT
                )
            ).model_version
            assert pb.ModelVersion.Status.Name(got.status) == "STATUS_FAILED"
            assert got.status_message == DIGEST_MISMATCH
            gone = await create(stub, "s3://refs/ok/missing.onnx", sha(good))
            code, details = await refused(download(stub, str(gone.version)))
            assert code is grpc.StatusCode.NOT_FOUND and "referenced object not found" in details
            assert sha(other) not in got.status_message and str(len(other)) not in got.status_message
