"""Regression tests of a review's findings (each failed before its fix): quota counts a deleted
version's bytes until they are swept and an upload in flight holds its room; a tenant-admin
cannot give a key more than the tenant's rate limit; version references that are digits but not
ASCII, or too long for a 64-bit column, are NOT_FOUND; artifact_format is checked for every
version; specs read from an uploaded ONNX file are validated; an upload that never sends its
first message ends; a shared model is usable by other tenants but not downloadable."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
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
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings

Stub = registry_grpc.RegistryServiceStub
CHUNK = 64 * 1024
SHA = "c" * 64


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


async def fails(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


def _meta(model: str, size: int, backend: str = "triton") -> pb.UploadModelVersionRequest:
    return pb.UploadModelVersionRequest(
        metadata=pb.UploadMetadata(
            model=model, model_version=pb.ModelVersion(backend=backend), size_bytes=size
        )
    )


async def _messages(
    model: str,
    data: bytes,
    size: int | None = None,
    backend: str = "triton",
    hold: asyncio.Event | None = None,
) -> AsyncIterator[pb.UploadModelVersionRequest]:
    yield _meta(model, len(data) if size is None else size, backend)
    for i in range(0, len(data), CHUNK):
        yield pb.UploadModelVersionRequest(chunk=data[i : i + CHUNK])
        if hold is not None and i == 0:
            await asyncio.wait_for(hold.wait(), 30)


async def upload(stub: Stub, model: str, data: bytes, md: Any = None, **kw: Any) -> pb.ModelVersion:
    return (await stub.UploadModelVersion(_messages(model, data, **kw), metadata=md)).model_version


@asynccontextmanager
async def registry(
    make: Callable[..., RegistrySettings], url: str, tmp: Path, **over: Any
) -> AsyncIterator[Stub]:
    async with running_server(make(url, tmp, **over)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = Stub(channel)
            for tenant in ("acme", "other"):
                await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name=tenant)))
            await stub.CreateModel(
                pb.CreateModelRequest(model=pb.Model(name="m")), metadata=as_tenant("acme")
            )
            yield stub


async def _poll(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- quota -----------------------------------------------------------------------------------


async def test_deleted_version_bytes_count_until_swept(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    acme = as_tenant("acme")
    async with registry(
        registry_settings, database_url, tmp_path, tenant_storage_quota_bytes=150_000
    ) as stub:
        await upload(stub, "m", os.urandom(100_000), acme)
        await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="1"), metadata=acme)
        got = await stub.GetTenant(pb.GetTenantRequest(tenant="acme"))
        assert got.tenant.storage_used_bytes == 100_000
        code, details = await fails(upload(stub, "m", os.urandom(100_000), acme))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "100000 bytes used of 150000" in details


async def test_upload_in_flight_holds_its_room(tmp_path: Path, registry_settings: Any) -> None:
    acme = as_tenant("acme")
    url = f"sqlite:///{tmp_path}/registry.db"
    async with registry(registry_settings, url, tmp_path, tenant_storage_quota_bytes=150_000) as stub:
        hold = asyncio.Event()
        first = asyncio.ensure_future(
            stub.UploadModelVersion(_messages("m", os.urandom(100_000), size=0, hold=hold), metadata=acme)
        )
        parts = tmp_path / "blobs" / "tmp"
        await _poll(lambda: parts.is_dir() and any(parts.iterdir()))  # the first is storing bytes
        code, details = await fails(upload(stub, "m", os.urandom(100_000), acme))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, details
        hold.set()
        assert (await first).model_version.artifact_size_bytes == 100_000
        got = await stub.GetTenant(pb.GetTenantRequest(tenant="acme"))
        assert got.tenant.storage_used_bytes == 100_000  # the refused upload stored nothing
        assert (await upload(stub, "m", os.urandom(50_000), acme)).version == 2  # the room is back


# -- rate limits of keys ---------------------------------------------------------------------


async def test_tenant_admin_cannot_exceed_the_tenants_rate_limit(
    tmp_path: Path, registry_settings: Any
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    async with registry(registry_settings, url, tmp_path) as stub:
        await stub.UpdateTenant(
            pb.UpdateTenantRequest(
                tenant=pb.Tenant(name="acme", rate_limit=pb.RateLimit(requests_per_second=10, burst=20)),
                update_mask=FieldMask(paths=["rate_limit"]),
            )
        )
        admin = as_tenant("acme", "tenant-admin")

        def key(rps: float, burst: int = 0) -> pb.CreateApiKeyRequest:
            limit = pb.RateLimit(requests_per_second=rps, burst=burst)
            return pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["read"], rate_limit=limit))

        for request in (key(50), key(5, 21)):
            code, details = await fails(stub.CreateApiKey(request, metadata=admin))
            assert code is grpc.StatusCode.INVALID_ARGUMENT
            assert "exceeds tenant 'acme'" in details and "10 requests/s, burst 20" in details
        assert not (await stub.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))).api_keys
        lower = await stub.CreateApiKey(key(5, 20), metadata=admin)
        verified = await stub.VerifyApiKey(pb.VerifyApiKeyRequest(secret=lower.secret))
        assert (verified.rate_limit.requests_per_second, verified.rate_limit.burst) == (5, 20)
        # a platform administrator may store a higher limit; the tenant's still caps it
        higher = await stub.CreateApiKey(key(50, 100))
        verified = await stub.VerifyApiKey(pb.VerifyApiKeyRequest(secret=higher.secret))
        assert (verified.rate_limit.requests_per_second, verified.rate_limit.burst) == (10, 20)


# -- version references, artifact_format ----------------------------------------------------


@pytest.mark.parametrize("ref", ["²", "1²", "9" * 19, "9" * 4400])
async def test_odd_version_numbers_are_not_found(
    database_url: str, tmp_path: Path, registry_settings: Any, ref: str
) -> None:
    async with registry(registry_settings, database_url, tmp_path) as stub:
        code, details = await fails(stub.GetModelVersion(pb.GetModelVersionRequest(model="m", version=ref)))
        assert code is grpc.StatusCode.NOT_FOUND, details
        assert len(details) < 200


async def test_artifact_format_is_checked_on_create(tmp_path: Path, registry_settings: Any) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    root = tmp_path / "root"
    root.mkdir()
    (root / "m.tar").write_bytes(b"x")
    async with registry(registry_settings, url, tmp_path, artifact_roots=str(root)) as stub:

        def create(fmt: str) -> Any:
            v = pb.ModelVersion(
                artifact_uri=(root / "m.tar").as_uri(),
                artifact_sha256=SHA,
                backend="triton",
                artifact_format=fmt,
            )
            return stub.CreateModelVersion(pb.CreateModelVersionRequest(model="m", model_version=v))

        code, details = await fails(create("rar"))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details == "artifact_format must be one of ['', 'tar', 'zip'], got 'rar'"
        assert (await create("tar")).model_version.artifact_format == "tar"


# -- uploads: specs from the file, the first message ----------------------------------------


def _onnx(input_name: str, dims: list[Any]) -> bytes:
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", [input_name], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.mark.parametrize(
    ("name", "dims", "expected"),
    [("", [1], "every tensor needs a name"), ("x", [-7], "dimensions must be >= -1")],
)
async def test_specs_read_from_an_onnx_upload_are_validated(
    tmp_path: Path, registry_settings: Any, name: str, dims: list[Any], expected: str
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    async with registry(registry_settings, url, tmp_path, max_concurrent_signature_reads=1) as stub:
        code, details = await fails(upload(stub, "m", _onnx(name, dims), as_tenant("acme"), backend="onnx"))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and expected in details, details
        assert not (await stub.ListModelVersions(pb.ListModelVersionsRequest(model="m"))).model_versions
        assert (await upload(stub, "m", _onnx("x", [1]), as_tenant("acme"), backend="onnx")).inputs[
            0
        ].name == "x"


async def test_upload_without_a_first_message_ends(tmp_path: Path, registry_settings: Any) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    async with registry(registry_settings, url, tmp_path, upload_idle_timeout_s=0.5) as stub:
        never = asyncio.Event()

        async def silent() -> AsyncIterator[pb.UploadModelVersionRequest]:
            await asyncio.wait_for(never.wait(), 30)
            yield _meta("m", 1)

        code, details = await fails(stub.UploadModelVersion(silent(), timeout=20))
        assert (code, details) == (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "upload idle for more than 0.5 s (REGISTRY_UPLOAD_IDLE_TIMEOUT_S)",
        )


# -- downloads of shared models -------------------------------------------------------------


async def test_shared_model_is_not_downloadable_by_other_tenants(
    database_url: str, tmp_path: Path, registry_settings: Any
) -> None:
    async with registry(registry_settings, database_url, tmp_path) as stub:
        await upload(stub, "m", b"print('secret')\n", as_tenant("acme"))
        await stub.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(name="m", shared=True), update_mask=FieldMask(paths=["shared"])
            )
        )
        other = as_tenant("other")
        assert (
            await stub.GetModelVersion(pb.GetModelVersionRequest(model="m", version="1"), metadata=other)
        ).model_version.version == 1

        async def download(md: Any, model: str = "m") -> bytes:
            request = pb.DownloadModelVersionRequest(model=model, version="1")
            return b"".join([m.chunk async for m in stub.DownloadModelVersion(request, metadata=md)])

        hidden = await fails(download(other))
        missing = await fails(download(other, "nope"))
        assert hidden == (grpc.StatusCode.NOT_FOUND, missing[1].replace("nope", "m"))
        assert await download(as_tenant("acme")) == b"print('secret')\n"
        assert await download(()) == b"print('secret')\n"  # trusted callers


# -- drift references of wide tensors --------------------------------------------------------


async def test_wide_drift_sample_is_bounded_and_leaves_the_loop_free(
    tmp_path: Path, registry_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A [1, 2_000_000] BOOL sample gives only drift_max_features features, and the reference
    is computed off the event loop: while it is held inside the computation, another RPC of the
    same server completes (before the fix the handler ran on the loop and blocked it)."""
    from modelserve_registry import drift

    entered, release = threading.Event(), threading.Event()
    finished: list[bool] = []
    real = drift.reference_of

    def held(values: Any, bins: int) -> Any:
        entered.set()
        release.wait(10)
        finished.append(True)
        return real(values, bins)

    monkeypatch.setattr(drift, "reference_of", held)
    url = f"sqlite:///{tmp_path}/registry.db"
    async with registry(registry_settings, url, tmp_path) as stub:
        await upload(stub, "m", b"artifact", as_tenant("acme"))
        wide = tensor_pb.Tensor(
            name="b", datatype="BOOL", shape=[1, 2_000_000], raw_contents=b"\x01" * 2_000_000
        )
        setting = asyncio.ensure_future(
            stub.SetDriftReference(pb.SetDriftReferenceRequest(model="m", version="1", sample=[wide]))
        )
        try:
            await _poll(entered.is_set)
            got = await stub.GetModel(pb.GetModelRequest(model="m"), timeout=20)
            assert got.model.name == "m" and finished == []  # served while the reference is computed
        finally:
            release.set()
        features = list((await setting).features)
    assert features == sorted(f"b[{j}]" for j in range(256))
