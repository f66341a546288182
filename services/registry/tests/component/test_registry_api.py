"""Over-the-wire behaviour of the registry on SQLite and PostgreSQL: CRUD and errors per RPC,
concurrency (version numbers, etags), Watch resume, tenant isolation, API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc

Stub = registry_grpc.RegistryServiceStub
SHA = "a" * 64
ARTIFACT_URI = ""
"""A real file under the registry's default artifact root (<data_dir>/artifacts), per test."""


@pytest.fixture(autouse=True)
def _artifact(tmp_path: Path) -> None:
    global ARTIFACT_URI
    path = tmp_path / "artifacts" / "m" / "1.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"onnx")
    ARTIFACT_URI = path.as_uri()


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


def version_pb(**over: Any) -> pb.ModelVersion:
    fields: dict[str, Any] = dict(artifact_uri=ARTIFACT_URI, artifact_sha256=SHA, backend="onnx")
    fields.update(over)
    return pb.ModelVersion(**fields)


async def fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def new_model(stub: Stub, name: str, **kw: Any) -> pb.Model:
    return (await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name=name, **kw)))).model


async def new_version(stub: Stub, model: str, **kw: Any) -> pb.ModelVersion:
    reply = await stub.CreateModelVersion(
        pb.CreateModelVersionRequest(model=model, model_version=version_pb(**kw))
    )
    return reply.model_version


# -- models -------------------------------------------------------------------------------


async def test_model_crud_round_trip(registry: Stub) -> None:
    created = await new_model(registry, "resnet", description="image", tags={"team": "vision"})
    assert (created.name, created.tenant, created.tags["team"]) == ("resnet", "default", "vision")
    assert created.etag and created.create_time.seconds > 0

    got = (await registry.GetModel(pb.GetModelRequest(model="resnet"))).model
    assert got == created

    updated = (
        await registry.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(name="resnet", description="new", etag=created.etag),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    ).model
    assert updated.description == "new" and updated.tags["team"] == "vision"
    assert updated.etag != created.etag

    code, details = await fails(
        registry.UpdateModel(
            pb.UpdateModelRequest(model=pb.Model(name="resnet", description="x", etag=created.etag))
        )
    )
    assert code is grpc.StatusCode.ABORTED and "changed since it was read" in details

    await registry.DeleteModel(pb.DeleteModelRequest(model="resnet"))
    code, details = await fails(registry.GetModel(pb.GetModelRequest(model="resnet")))
    assert code is grpc.StatusCode.NOT_FOUND and "'resnet' not found" in details


@pytest.mark.parametrize(
    "name",
    [
        "../etc",
        "a/../b",
        "/etc/passwd",
        "model/",
        " ..",
        "..",
        "a..b",
        "",
        "  ",
        "UPPER",
        "-lead",
        "x" * 64,
        "a%2F..%2Fb",
        "mödel",
        "a b",
    ],
)
async def test_create_model_bad_name_is_invalid_argument(registry: Stub, name: str) -> None:
    code, details = await fails(registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name=name))))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "model name" in details
    code, _ = await fails(registry.GetModel(pb.GetModelRequest(model=name)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_create_model_twice_is_already_exists(registry: Stub) -> None:
    await new_model(registry, "dup")
    code, details = await fails(registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="dup"))))
    assert code is grpc.StatusCode.ALREADY_EXISTS and "'dup' already exists" in details


async def test_list_models_filter_order_and_pages(registry: Stub) -> None:
    for i in range(7):
        await new_model(
            registry, f"m{i}", tags={"kind": "even" if i % 2 == 0 else "odd"}, description=f"model {i}"
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await registry.ListModels(
            pb.ListModelsRequest(page_size=3, page_token=token, order_by="name desc")
        )
        seen += [m.name for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"m{i}" for i in reversed(range(7))]
    odd = await registry.ListModels(pb.ListModelsRequest(filter='tags.kind = "odd" AND name != "m3"'))
    assert [m.name for m in odd.models] == ["m1", "m5"]
    contains = await registry.ListModels(pb.ListModelsRequest(filter='description : "del 4"'))
    assert [m.name for m in contains.models] == ["m4"]
    code, details = await fails(registry.ListModels(pb.ListModelsRequest(filter="owner = x")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "filter term" in details
    code, _ = await fails(registry.ListModels(pb.ListModelsRequest(page_token="garbage")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    first = await registry.ListModels(pb.ListModelsRequest(page_size=2))
    code, details = await fails(
        registry.ListModels(
            pb.ListModelsRequest(page_size=2, page_token=first.next_page_token, order_by="create_time")
        )
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "different filter" in details


# -- versions and aliases -----------------------------------------------------------------


async def test_versions_numbered_resolved_by_alias_and_latest(registry: Stub) -> None:
    await new_model(registry, "bert")
    spec = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 3])
    v1 = await new_version(
        registry,
        "bert",
        inputs=[spec],
        outputs=[spec],
        metadata={"framework": "onnx"},
        lineage=pb.Lineage(source_run="run-1"),
        batching=pb.BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4, 8]),
    )
    v2 = await new_version(registry, "bert")
    assert (v1.version, v2.version) == (1, 2)
    assert v1.status == pb.ModelVersion.STATUS_PENDING and v1.inputs[0].shape == [-1, 3]
    assert v1.lineage.source_run == "run-1" and v1.batching.preferred_batch_sizes == [4, 8]

    alias = (await registry.SetAlias(pb.SetAliasRequest(model="bert", alias="production", version="1"))).alias
    assert alias.version == 1
    by_alias = await registry.GetModelVersion(pb.GetModelVersionRequest(model="bert", version="production"))
    assert by_alias.model_version.version == 1 and list(by_alias.model_version.aliases) == ["production"]
    latest = await registry.GetModelVersion(pb.GetModelVersionRequest(model="bert", version="latest"))
    assert latest.model_version.version == 2
    moved = await registry.SetAlias(
        pb.SetAliasRequest(model="bert", alias="production", version="2", etag=alias.etag)
    )
    assert moved.alias.version == 2
    code, _ = await fails(
        registry.SetAlias(pb.SetAliasRequest(model="bert", alias="production", version="1", etag=alias.etag))
    )
    assert code is grpc.StatusCode.ABORTED
    code, _ = await fails(registry.SetAlias(pb.SetAliasRequest(model="bert", alias="latest", version="1")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, details = await fails(
        registry.GetModelVersion(pb.GetModelVersionRequest(model="bert", version="9"))
    )
    assert code is grpc.StatusCode.NOT_FOUND and "no version '9'" in details
    code, _ = await fails(
        registry.GetModelVersion(pb.GetModelVersionRequest(model="bert", version="staging"))
    )
    assert code is grpc.StatusCode.NOT_FOUND
    listed = await registry.ListModelVersions(pb.ListModelVersionsRequest(model="bert"))
    assert [v.version for v in listed.model_versions] == [2, 1]
    await registry.DeleteAlias(pb.DeleteAliasRequest(model="bert", alias="production"))
    code, _ = await fails(registry.GetAlias(pb.GetAliasRequest(model="bert", alias="production")))
    assert code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"artifact_uri": "s3://bucket/x"}, "REGISTRY_ARTIFACT_S3_ALLOWED"),
        ({"artifact_uri": "file:///models/../etc/passwd"}, "'..'"),
        ({"artifact_uri": "file:///models/m/1.onnx"}, "not under an allowed artifact root"),
        ({"artifact_sha256": "abc"}, "64 lowercase hex"),
        ({"backend": "tensorflow"}, "backend must be one of"),
        (
            {"inputs": [tensor_pb.TensorSpec(name="x", datatype="FLOAT", shape=[1])]},
            "datatype must be one of",
        ),
        (
            {"inputs": [tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-2])]},
            "dimensions must be >= -1",
        ),
        ({"batching": pb.BatchingConfig(max_batch_size=4, preferred_batch_sizes=[8])}, "must not exceed"),
        ({"status": pb.ModelVersion.STATUS_FAILED}, "PENDING or READY"),
    ],
)
async def test_create_version_bad_input_is_invalid_argument(
    registry: Stub, over: dict[str, Any], needle: str
) -> None:
    await new_model(registry, "m")
    code, details = await fails(
        registry.CreateModelVersion(pb.CreateModelVersionRequest(model="m", model_version=version_pb(**over)))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and needle in details


async def test_version_status_transitions(registry: Stub) -> None:
    await new_model(registry, "m")
    await new_version(registry, "m")

    async def set_status(status: int, message: str = "") -> pb.ModelVersion:
        req = pb.UpdateModelVersionRequest(
            model_version=pb.ModelVersion(model="m", version=1, status=status, status_message=message)
        )
        return (await registry.UpdateModelVersion(req)).model_version

    failed = await set_status(pb.ModelVersion.STATUS_FAILED, "sha256 mismatch")
    assert failed.status == pb.ModelVersion.STATUS_FAILED and failed.status_message == "sha256 mismatch"
    ready = await set_status(pb.ModelVersion.STATUS_READY)
    assert ready.status == pb.ModelVersion.STATUS_READY and ready.status_message == "sha256 mismatch"
    code, details = await fails(set_status(pb.ModelVersion.STATUS_PENDING))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "from READY to PENDING" in details


# -- concurrency --------------------------------------------------------------------------


async def test_create_version_eight_concurrent_creators_gap_free(registry: Stub) -> None:
    await new_model(registry, "hot")

    async def creator(n: int) -> list[int]:
        return [(await new_version(registry, "hot", description=f"c{n}")).version for _ in range(10)]

    results = await asyncio.gather(*(creator(n) for n in range(8)))
    numbers = sorted(v for r in results for v in r)
    assert numbers == list(range(1, 81))  # no duplicate, no gap, exact count
    for r in results:
        assert r == sorted(r)  # each creator sees its own versions increase
    model = (await registry.GetModel(pb.GetModelRequest(model="hot"))).model
    assert model.latest_version == 80
    listed = await registry.ListModelVersions(pb.ListModelVersionsRequest(model="hot", page_size=1000))
    assert len(listed.model_versions) == 80


async def test_update_model_same_etag_exactly_one_wins(registry: Stub) -> None:
    model = await new_model(registry, "race")
    for round_ in range(5):
        etag = (await registry.GetModel(pb.GetModelRequest(model="race"))).model.etag

        async def update(text: str, etag: str = etag) -> str:
            try:
                await registry.UpdateModel(
                    pb.UpdateModelRequest(model=pb.Model(name="race", description=text, etag=etag))
                )
                return "ok"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        outcomes = await asyncio.gather(update(f"a{round_}"), update(f"b{round_}"))
        assert sorted(outcomes) == ["ABORTED", "ok"], outcomes
    assert model.name == "race"


# -- deployments --------------------------------------------------------------------------


async def test_deployment_canary_mirror_and_refusals(registry: Stub) -> None:
    await new_model(registry, "m")
    for _ in range(3):
        await new_version(registry, "m")
    await registry.SetAlias(pb.SetAliasRequest(model="m", alias="production", version="1"))
    dep = (
        await registry.UpdateDeployment(
            pb.UpdateDeploymentRequest(
                deployment=pb.Deployment(
                    model="m",
                    targets=[
                        pb.DeploymentTarget(version="production", weight=90),
                        pb.DeploymentTarget(version="2", weight=10),
                        pb.DeploymentTarget(version="3", mirror=True),
                    ],
                    batching_overrides=pb.BatchingConfig(max_queue_delay_us=500),
                    rate_limit=pb.RateLimit(requests_per_second=100, burst=20),
                )
            )
        )
    ).deployment
    assert [(t.version_number, t.weight, t.mirror) for t in dep.targets] == [
        (1, 90, False),
        (2, 10, False),
        (3, 0, True),
    ]
    assert dep.rate_limit.requests_per_second == 100 and dep.batching_overrides.max_queue_delay_us == 500
    got = (await registry.GetDeployment(pb.GetDeploymentRequest(model="m"))).deployment
    assert got == dep
    listed = await registry.ListDeployments(pb.ListDeploymentsRequest())
    assert [d.model for d in listed.deployments] == ["m"] and listed.revision >= int(dep.etag)

    bad = [
        (
            [pb.DeploymentTarget(version="1", weight=50), pb.DeploymentTarget(version="2", weight=40)],
            "sum to 100",
        ),
        ([pb.DeploymentTarget(version="1", weight=100), pb.DeploymentTarget(version="1", weight=0)], "twice"),
        (
            [
                pb.DeploymentTarget(version="3", weight=5, mirror=True),
                pb.DeploymentTarget(version="1", weight=100),
            ],
            "mirror target must have weight 0",
        ),
        ([pb.DeploymentTarget(version="3", mirror=True)], "non-mirror"),
    ]
    for targets, needle in bad:
        code, details = await fails(
            registry.UpdateDeployment(
                pb.UpdateDeploymentRequest(deployment=pb.Deployment(model="m", targets=targets))
            )
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT and needle in details, details
    code, _ = await fails(
        registry.UpdateDeployment(
            pb.UpdateDeploymentRequest(
                deployment=pb.Deployment(model="m", targets=[pb.DeploymentTarget(version="9", weight=100)])
            )
        )
    )
    assert code is grpc.StatusCode.NOT_FOUND
    # a failed request changed nothing
    assert (await registry.GetDeployment(pb.GetDeploymentRequest(model="m"))).deployment == dep

    code, details = await fails(
        registry.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="2"))
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "deployed" in details
    code, details = await fails(registry.DeleteModel(pb.DeleteModelRequest(model="m")))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "deployed" in details
    code, _ = await fails(
        registry.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=pb.Deployment(model="m", etag="1")))
    )
    assert code is grpc.StatusCode.ABORTED

    await registry.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            model_version=pb.ModelVersion(model="m", version=3, status=pb.ModelVersion.STATUS_FAILED)
        )
    )
    code, details = await fails(
        registry.UpdateDeployment(
            pb.UpdateDeploymentRequest(
                deployment=pb.Deployment(model="m", targets=[pb.DeploymentTarget(version="3", weight=100)])
            )
        )
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "FAILED" in details

    await registry.UpdateDeployment(
        pb.UpdateDeploymentRequest(deployment=pb.Deployment(model="m", etag=dep.etag))
    )
    await registry.DeleteModelVersion(pb.DeleteModelVersionRequest(model="m", version="production"))
    await registry.DeleteModel(pb.DeleteModelRequest(model="m"))


# -- watch --------------------------------------------------------------------------------


async def _collect(stub: Stub, after: int, count: int, **kw: Any) -> list[pb.WatchResponse]:
    out: list[pb.WatchResponse] = []
    call = stub.Watch(pb.WatchRequest(after_revision=after, **kw))
    async for event in call:
        if event.type == pb.CHANGE_TYPE_UNSPECIFIED:
            continue  # progress note
        out.append(event)
        if len(out) == count:
            call.cancel()
            break
    return out


async def test_watch_resume_after_disconnect_loses_nothing(registry: Stub) -> None:
    await new_model(registry, "w")
    first = await asyncio.wait_for(_collect(registry, 0, 1), 10)
    assert first[0].type == pb.CHANGE_TYPE_CREATED and first[0].model.name == "w"

    # a live watcher, disconnected after 5 events while writers keep going
    writer_done = asyncio.Event()

    async def writer() -> None:
        for _ in range(10):
            await new_version(registry, "w")
        await registry.SetAlias(pb.SetAliasRequest(model="w", alias="prod", version="3"))
        await registry.UpdateDeployment(
            pb.UpdateDeploymentRequest(
                deployment=pb.Deployment(model="w", targets=[pb.DeploymentTarget(version="prod", weight=100)])
            )
        )
        writer_done.set()

    task = asyncio.create_task(writer())
    part1 = await asyncio.wait_for(_collect(registry, first[0].revision, 5), 10)
    await task
    part2 = await asyncio.wait_for(_collect(registry, part1[-1].revision, 7), 10)
    events = first + part1 + part2
    revisions = [e.revision for e in events]
    assert revisions == list(range(revisions[0], revisions[0] + 13))  # contiguous: nothing lost, no dupes
    assert [e.model_version.version for e in events if e.WhichOneof("resource") == "model_version"] == list(
        range(1, 11)
    )
    assert events[-2].alias.alias == "prod" and events[-1].deployment.targets[0].version_number == 3
    assert writer_done.is_set()

    # -1 starts at the head: only new changes
    head_task = asyncio.create_task(_collect(registry, -1, 1))
    for i in range(50):  # write until the stream (started at the head at some point) sees a write
        await registry.UpdateModel(pb.UpdateModelRequest(model=pb.Model(name="w", description=f"d{i}")))
        done, _ = await asyncio.wait({head_task}, timeout=0.2)
        if done:
            break
    (latest,) = await asyncio.wait_for(head_task, 10)
    # the first event is one of these updates, never an older change
    assert latest.type == pb.CHANGE_TYPE_UPDATED and latest.revision > revisions[-1]


# -- tenants, isolation and keys ----------------------------------------------------------


async def test_tenant_isolation_not_found_not_permission_denied(registry: Stub) -> None:
    for name in ("acme", "globex"):
        await registry.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name=name)))
    a, b = as_tenant("acme"), as_tenant("globex")
    mine = (
        await registry.CreateModel(
            pb.CreateModelRequest(model=pb.Model(name="a-model", tenant="globex")), metadata=a
        )
    ).model
    assert mine.tenant == "acme"  # a tenant cannot create in another tenant
    await registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="b-model")), metadata=b)
    await registry.CreateModelVersion(
        pb.CreateModelVersionRequest(model="b-model", model_version=version_pb()), metadata=b
    )

    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: registry.GetModel(pb.GetModelRequest(model="b-model"), metadata=a),
        lambda: registry.UpdateModel(
            pb.UpdateModelRequest(model=pb.Model(name="b-model", description="x")), metadata=a
        ),
        lambda: registry.DeleteModel(pb.DeleteModelRequest(model="b-model"), metadata=a),
        lambda: registry.CreateModelVersion(
            pb.CreateModelVersionRequest(model="b-model", model_version=version_pb()), metadata=a
        ),
        lambda: registry.GetModelVersion(pb.GetModelVersionRequest(model="b-model", version="1"), metadata=a),
        lambda: registry.SetAlias(pb.SetAliasRequest(model="b-model", alias="p", version="1"), metadata=a),
        lambda: registry.GetDeployment(pb.GetDeploymentRequest(model="b-model"), metadata=a),
        lambda: registry.GetTenant(pb.GetTenantRequest(tenant="globex"), metadata=a),
        lambda: registry.ListApiKeys(
            pb.ListApiKeysRequest(tenant="globex"), metadata=as_tenant("acme", "tenant-admin")
        ),
    ]
    missing = await fails(registry.GetModel(pb.GetModelRequest(model="no-such"), metadata=a))
    for call in calls:
        code, details = await fails(call())
        assert code is grpc.StatusCode.NOT_FOUND, details
    # the answer for another tenant's model is the same as for a missing one
    hidden = await fails(registry.GetModel(pb.GetModelRequest(model="b-model"), metadata=a))
    assert hidden[1].replace("b-model", "X") == missing[1].replace("no-such", "X")

    listed = await registry.ListModels(pb.ListModelsRequest(), metadata=a)
    assert [m.name for m in listed.models] == ["a-model"]
    # "admin" in a tenant caller's scopes grants nothing platform-wide
    admin = await registry.ListModels(pb.ListModelsRequest(), metadata=as_tenant("acme", "admin,read"))
    assert [m.name for m in admin.models] == ["a-model"]
    code, _ = await fails(
        registry.GetModel(pb.GetModelRequest(model="b-model"), metadata=as_tenant("acme", "admin,read"))
    )
    assert code is grpc.StatusCode.NOT_FOUND
    everything = await registry.ListModels(pb.ListModelsRequest())  # trusted caller
    assert {m.name for m in everything.models} == {"a-model", "b-model"}

    watched = await asyncio.wait_for(
        _collect(
            registry,
            0,
            1,
        ),
        10,
    )  # internal caller sees everything
    assert watched
    acme_events = await asyncio.wait_for(_collect_until_idle(registry, a), 10)
    assert acme_events and all(e.tenant == "acme" for e in acme_events)

    code, details = await fails(
        registry.CreateModel(
            pb.CreateModelRequest(model=pb.Model(name="ro")), metadata=as_tenant("acme", "read")
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED and "'write'" in details
    code, _ = await fails(
        registry.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name="x")), metadata=a)
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def _collect_until_idle(stub: Stub, metadata: Any) -> list[pb.WatchResponse]:
    out: list[pb.WatchResponse] = []
    call = stub.Watch(pb.WatchRequest(after_revision=0), metadata=metadata)
    try:
        while True:
            event = await asyncio.wait_for(call.read(), 1.0)
            out.append(event)
    except TimeoutError:
        call.cancel()
    return out


async def test_api_key_verify_rotate_grace_and_revoke(registry: Stub) -> None:
    await registry.CreateTenant(
        pb.CreateTenantRequest(
            tenant=pb.Tenant(name="acme", rate_limit=pb.RateLimit(requests_per_second=50, burst=10))
        )
    )
    created = await registry.CreateApiKey(
        pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(display_name="ci", scopes=["infer", "read"]))
    )
    key, secret = created.api_key, created.secret
    assert secret.startswith(f"ms_{key.key}_") and key.tenant == "acme"

    async def verify(s: str) -> pb.VerifyApiKeyResponse:
        return await registry.VerifyApiKey(pb.VerifyApiKeyRequest(secret=s))

    ok = await verify(secret)
    assert (ok.key, ok.tenant, list(ok.scopes)) == (key.key, "acme", ["infer", "read"])
    assert ok.rate_limit.requests_per_second == 50  # the tenant's limit
    for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "ms_k000000000000_x", "garbage", ""):
        code, details = await fails(verify(wrong))
        assert code is grpc.StatusCode.UNAUTHENTICATED and details == "invalid API key"

    listed = await registry.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))
    assert [k.key for k in listed.api_keys] == [key.key]
    assert secret not in str(listed) and "secret" not in str(listed)

    rotated = await registry.RotateApiKey(
        pb.RotateApiKeyRequest(tenant="acme", key=key.key, grace_period=Duration(seconds=60))
    )
    assert rotated.secret != secret
    assert (await verify(rotated.secret)).key == key.key
    in_grace = await verify(secret)  # the old secret keeps working during the grace period
    assert in_grace.expire_time.seconds > 0
    again = await registry.RotateApiKey(
        pb.RotateApiKeyRequest(tenant="acme", key=key.key, grace_period=Duration(seconds=0))
    )
    code, _ = await fails(verify(rotated.secret))  # grace 0: the previous secret stops at once
    assert code is grpc.StatusCode.UNAUTHENTICATED
    await verify(again.secret)

    await registry.DeleteApiKey(pb.DeleteApiKeyRequest(tenant="acme", key=key.key))
    code, _ = await fails(verify(again.secret))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert not (await registry.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))).api_keys
    code, _ = await fails(registry.GetApiKey(pb.GetApiKeyRequest(tenant="acme", key=key.key)))
    assert code is grpc.StatusCode.NOT_FOUND


async def test_api_key_cannot_grant_scopes_the_caller_lacks(registry: Stub) -> None:
    await registry.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name="acme")))
    code, details = await fails(
        registry.CreateApiKey(
            pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["infer"])),
            metadata=as_tenant("acme", "read,infer"),
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED and "'tenant-admin'" in details
    implied = await registry.CreateApiKey(  # tenant-admin implies read, write and infer
        pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["write", "infer", "tenant-admin"])),
        metadata=as_tenant("acme", "tenant-admin"),
    )
    assert list(implied.api_key.scopes) == ["infer", "write", "tenant-admin"]
    code, details = await fails(
        registry.CreateApiKey(
            pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["admin"])),
            metadata=as_tenant("acme", "tenant-admin"),
        )
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "scope 'admin' is platform-only; use 'tenant-admin'"
    code, details = await fails(  # not even the platform administrator gives a tenant key "admin"
        registry.CreateApiKey(pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["admin"])))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "platform-only" in details
    code, _ = await fails(
        registry.CreateApiKey(pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["root"])))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    own = await registry.CreateApiKey(
        pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["read"])),
        metadata=as_tenant("acme", "tenant-admin"),
    )
    assert list(own.api_key.scopes) == ["read"]
    code, _ = await fails(
        registry.VerifyApiKey(pb.VerifyApiKeyRequest(secret=own.secret), metadata=as_tenant("acme"))
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
