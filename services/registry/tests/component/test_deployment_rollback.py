"""RollbackDeployment on SQLite and PostgreSQL: restores the deployment before the last change
(etag-guarded), FAILED_PRECONDITION with none, a Watch change for followers, the same tenant and
code-execution checks as UpdateDeployment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc

Stub = registry_grpc.RegistryServiceStub
SHA = "a" * 64


def _artifact(tmp_path: Path, name: str) -> str:
    path = tmp_path / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path.as_uri()


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


async def fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def _version(stub: Stub, tmp_path: Path, model: str, md: Any = (), backend: str = "onnx") -> None:
    uri = _artifact(tmp_path, f"{model}.py" if backend == "python" else f"{model}.onnx")
    await stub.CreateModelVersion(
        pb.CreateModelVersionRequest(
            model=model, model_version=pb.ModelVersion(artifact_uri=uri, artifact_sha256=SHA, backend=backend)
        ),
        metadata=md,
    )


async def _deploy(
    stub: Stub, model: str, *targets: pb.DeploymentTarget, md: Any = (), **kw: Any
) -> pb.Deployment:
    reply = await stub.UpdateDeployment(
        pb.UpdateDeploymentRequest(deployment=pb.Deployment(model=model, targets=targets, **kw)), metadata=md
    )
    return reply.deployment


async def _rollback(stub: Stub, model: str, etag: str = "", md: Any = ()) -> pb.Deployment:
    reply = await stub.RollbackDeployment(pb.RollbackDeploymentRequest(model=model, etag=etag), metadata=md)
    return reply.deployment


def _shape(d: pb.Deployment) -> list[tuple[str, int, int, bool]]:
    return [(t.version, t.version_number, t.weight, t.mirror) for t in d.targets]


async def _next_change(stub: Stub, after: int) -> pb.WatchResponse:
    call = stub.Watch(pb.WatchRequest(after_revision=after, model="m"))
    try:
        async with asyncio.timeout(20):
            async for event in call:
                if event.type != pb.CHANGE_TYPE_UNSPECIFIED:
                    return event
    finally:
        call.cancel()
    raise AssertionError("the watch stream ended without a change")


async def test_rollback_restores_the_previous_deployment_and_watchers_see_it(
    registry: Stub, tmp_path: Path
) -> None:
    await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")))
    for _ in range(2):
        await _version(registry, tmp_path, "m")
    code, details = await fails(_rollback(registry, "m"))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "no previous deployment" in details

    first = await _deploy(
        registry,
        "m",
        pb.DeploymentTarget(version="1", weight=100),
        rate_limit=pb.RateLimit(requests_per_second=7),
    )
    code, _ = await fails(_rollback(registry, "m", first.etag))
    assert code is grpc.StatusCode.FAILED_PRECONDITION  # created: nothing came before it
    second = await _deploy(
        registry,
        "m",
        pb.DeploymentTarget(version="1", weight=80),
        pb.DeploymentTarget(version="2", weight=20),
        etag=first.etag,
    )
    code, details = await fails(_rollback(registry, "m", first.etag))
    assert code is grpc.StatusCode.ABORTED and "changed since it was read" in details
    assert (await registry.GetDeployment(pb.GetDeploymentRequest(model="m"))).deployment == second

    restored = await _rollback(registry, "m", second.etag)
    assert _shape(restored) == [("1", 1, 100, False)]
    assert restored.rate_limit.requests_per_second == 7 and int(restored.etag) > int(second.etag)
    assert (await registry.GetDeployment(pb.GetDeploymentRequest(model="m"))).deployment == restored
    change = await _next_change(registry, int(second.etag))
    assert change.type == pb.CHANGE_TYPE_UPDATED and change.deployment == restored

    # the replaced deployment became the previous one: rolling back again undoes the rollback
    again = await _rollback(registry, "m")
    assert _shape(again) == _shape(second) and again.rate_limit.requests_per_second == 0


async def test_rollback_is_confined_to_the_tenant_and_rechecks_code_permission(
    registry: Stub, tmp_path: Path
) -> None:
    for name in ("acme", "globex"):
        await registry.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name=name)))
    a, b = as_tenant("acme"), as_tenant("globex")
    await registry.UpdateTenant(
        pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", code_execution_allowed=True))
    )
    await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")), metadata=a)
    await _version(registry, tmp_path, "m", a, backend="python")
    await _version(registry, tmp_path, "m", a)
    await _deploy(registry, "m", pb.DeploymentTarget(version="1", weight=100), md=a)
    current = await _deploy(registry, "m", pb.DeploymentTarget(version="2", weight=100), md=a)

    missing, missing_details = await fails(
        registry.GetDeployment(pb.GetDeploymentRequest(model="nope"), metadata=b)
    )
    code, details = await fails(_rollback(registry, "m", md=b))
    assert (code, details.replace("'m'", "'nope'")) == (missing, missing_details)
    code, _ = await fails(_rollback(registry, "m", md=as_tenant("acme", "read")))
    assert code is grpc.StatusCode.PERMISSION_DENIED

    await registry.UpdateTenant(
        pb.UpdateTenantRequest(
            tenant=pb.Tenant(name="acme", code_execution_allowed=False),
            update_mask=FieldMask(paths=["code_execution_allowed"]),
        )
    )
    code, details = await fails(_rollback(registry, "m", md=a))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "code_execution_allowed" in details
    assert (
        await registry.GetDeployment(pb.GetDeploymentRequest(model="m"), metadata=a)
    ).deployment == current
