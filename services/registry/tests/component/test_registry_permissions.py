"""Permissions over the wire, on SQLite and PostgreSQL: platform-shared models, tenant-admin and
the platform-only "admin" scope, UpdateTenant and code_execution_allowed, artifact URIs confined
to the artifact roots, bounded key-rotation grace and expire_time (issue 13 item 5), Watch skipping
an entry it cannot decode or encode, migration 2 (tenant keys' "admin" -> "tenant-admin")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.migrations import migrate
from modelserve_registry.db import Database, open_database
from modelserve_registry.migrations import MIGRATIONS, SCHEMA
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings

Stub = registry_grpc.RegistryServiceStub
SHA = "c" * 64
TEN_THOUSAND_YEARS_S = 10_000 * 366 * 86400


@dataclass
class Reg:
    stub: Stub
    url: str
    tmp: Path
    root: Path

    def uri(self, name: str = "m.onnx") -> str:
        return (self.root / name).as_uri()


def _settings(url: str, tmp: Path, root: Path, **over: Any) -> RegistrySettings:
    base: dict[str, Any] = dict(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        database_url=url,
        data_dir=tmp,
        db_check_interval_s=0.2,
        db_timeout_s=2.0,
        watch_poll_interval_s=0.1,
        shutdown_grace_s=0.5,
        access_log=False,
        artifact_roots=f"{root}, {tmp / 'second-root'}",
        max_key_rotation_grace_s=7 * 86400,
    )
    base.update(over)
    return RegistrySettings(**base)


@asynccontextmanager
async def _running(url: str, tmp_path: Path) -> AsyncIterator[Reg]:
    root = tmp_path / "artifacts-root"
    root.mkdir()
    (root / "m.onnx").write_bytes(b"model")
    (root / "code.py").write_text("print('hi')\n")
    async with running_server(_settings(url, tmp_path, root)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Reg(registry_grpc.RegistryServiceStub(channel), url, tmp_path, root)


@pytest.fixture
async def reg(database_url: str, tmp_path: Path) -> AsyncIterator[Reg]:
    async with _running(database_url, tmp_path) as r:
        yield r


@pytest.fixture
async def sqlite_reg(tmp_path: Path) -> AsyncIterator[Reg]:
    """URI checks do not touch the database: SQLite only, to keep the suite fast."""
    async with _running(f"sqlite:///{tmp_path}/registry.db", tmp_path) as r:
        yield r


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


async def fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def _tenants(stub: Stub, *names: str) -> None:
    for name in names:
        await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name=name)))


async def _version(r: Reg, model: str, md: Any = (), backend: str = "onnx", uri: str = "") -> pb.ModelVersion:
    reply = await r.stub.CreateModelVersion(
        pb.CreateModelVersionRequest(
            model=model,
            model_version=pb.ModelVersion(artifact_uri=uri or r.uri(), artifact_sha256=SHA, backend=backend),
        ),
        metadata=md,
    )
    return reply.model_version


async def _events(stub: Stub, after: int, idle_s: float = 0.8, md: Any = ()) -> list[pb.WatchResponse]:
    """Changes above ``after`` until the stream is idle for ``idle_s`` (bounded: 20 s)."""
    out: list[pb.WatchResponse] = []
    call = stub.Watch(pb.WatchRequest(after_revision=after), metadata=md)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    try:
        while loop.time() < deadline:
            event = await asyncio.wait_for(call.read(), idle_s)
            if event is grpc.aio.EOF:
                break
            if event.type != pb.CHANGE_TYPE_UNSPECIFIED:
                out.append(event)
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return out


# -- shared models -------------------------------------------------------------------------


async def test_shared_model_is_read_only_to_other_tenants_and_only_the_platform_sets_it(reg: Reg) -> None:
    s = reg.stub
    await _tenants(s, "acme", "globex")
    a, b = as_tenant("acme"), as_tenant("globex")
    code, details = await fails(
        s.CreateModel(pb.CreateModelRequest(model=pb.Model(name="mine", shared=True)), metadata=a)
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED and "platform administrator" in details
    await s.CreateModel(pb.CreateModelRequest(model=pb.Model(name="mine")), metadata=a)
    code, _ = await fails(
        s.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(name="mine", shared=True), update_mask=FieldMask(paths=["shared"])
            ),
            metadata=a,
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    code, _ = await fails(s.GetModel(pb.GetModelRequest(model="mine"), metadata=b))
    assert code is grpc.StatusCode.NOT_FOUND  # not shared: invisible

    # the platform shares acme's model: globex reads it, cannot change it
    await _version(reg, "mine", a)
    await s.SetAlias(pb.SetAliasRequest(model="mine", alias="prod", version="1"), metadata=a)
    deployed = await s.UpdateDeployment(
        pb.UpdateDeploymentRequest(
            deployment=pb.Deployment(model="mine", targets=[pb.DeploymentTarget(version="1", weight=100)])
        ),
        metadata=a,
    )
    assert deployed.deployment.shared is False
    head = (await s.ListDeployments(pb.ListDeploymentsRequest())).revision
    shared = await s.UpdateModel(pb.UpdateModelRequest(model=pb.Model(name="mine", shared=True)))
    assert shared.model.shared and shared.model.tenant == "acme"

    assert (await s.GetModel(pb.GetModelRequest(model="mine"), metadata=b)).model.shared
    listed = await s.ListModels(pb.ListModelsRequest(), metadata=b)
    assert [m.name for m in listed.models] == ["mine"]
    assert (
        await s.GetModelVersion(pb.GetModelVersionRequest(model="mine", version="prod"), metadata=b)
    ).model_version.version == 1
    versions = await s.ListModelVersions(pb.ListModelVersionsRequest(model="mine"), metadata=b)
    assert [v.version for v in versions.model_versions] == [1]
    aliases = await s.ListAliases(pb.ListAliasesRequest(model="mine"), metadata=b)
    assert [x.alias for x in aliases.aliases] == ["prod"]
    got = (await s.GetDeployment(pb.GetDeploymentRequest(model="mine"), metadata=b)).deployment
    assert got.shared and got.targets[0].version_number == 1
    assert (await s.GetDeployment(pb.GetDeploymentRequest(model="mine"))).deployment.shared

    writes = [
        s.UpdateModel(pb.UpdateModelRequest(model=pb.Model(name="mine", description="x")), metadata=b),
        s.DeleteModel(pb.DeleteModelRequest(model="mine"), metadata=b),
        s.CreateModelVersion(
            pb.CreateModelVersionRequest(
                model="mine",
                model_version=pb.ModelVersion(artifact_uri=reg.uri(), artifact_sha256=SHA, backend="onnx"),
            ),
            metadata=b,
        ),
        s.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                model_version=pb.ModelVersion(model="mine", version=1, description="x")
            ),
            metadata=b,
        ),
        s.DeleteModelVersion(pb.DeleteModelVersionRequest(model="mine", version="1"), metadata=b),
        s.SetAlias(pb.SetAliasRequest(model="mine", alias="evil", version="1"), metadata=b),
        s.DeleteAlias(pb.DeleteAliasRequest(model="mine", alias="prod"), metadata=b),
        s.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=pb.Deployment(model="mine")), metadata=b),
    ]
    for call in writes:
        code, details = await fails(call)
        assert code is grpc.StatusCode.PERMISSION_DENIED and "shared read-only" in details, details
    # the owner still writes it
    await s.UpdateModel(pb.UpdateModelRequest(model=pb.Model(name="mine", description="ok")), metadata=a)

    # the toggle reached Watch as a deployment change carrying shared=True
    events = await _events(s, head)
    deployments = [e.deployment for e in events if e.WhichOneof("resource") == "deployment"]
    assert deployments and deployments[0].shared and deployments[0].model == "mine"
    # globex may follow the shared model's own changes
    theirs = await _events(s, head, md=b)
    assert theirs == []  # without a model filter: only globex's tenant
    call = s.Watch(pb.WatchRequest(after_revision=head, model="mine"), metadata=b)
    first = await asyncio.wait_for(call.read(), 10)
    call.cancel()
    assert first.model.name == "mine" and first.model.shared
    # and un-sharing: another deployment change, and globex loses sight of it
    await s.UpdateModel(
        pb.UpdateModelRequest(
            model=pb.Model(name="mine", shared=False), update_mask=FieldMask(paths=["shared"])
        )
    )
    events = await _events(s, head)
    flips = [e.deployment.shared for e in events if e.WhichOneof("resource") == "deployment"]
    assert flips == [True, False]
    code, _ = await fails(s.GetModel(pb.GetModelRequest(model="mine"), metadata=b))
    assert code is grpc.StatusCode.NOT_FOUND


async def test_name_held_by_another_tenant_is_already_exists_without_naming_it(reg: Reg) -> None:
    await _tenants(reg.stub, "acme", "globex")
    await reg.stub.CreateModel(
        pb.CreateModelRequest(model=pb.Model(name="taken")), metadata=as_tenant("globex")
    )
    code, details = await fails(
        reg.stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="taken")), metadata=as_tenant("acme"))
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS and "globex" not in details


# -- tenants and code permission -----------------------------------------------------------


async def test_update_tenant_is_platform_only_with_etag_and_mask(reg: Reg) -> None:
    s = reg.stub
    await _tenants(s, "acme")
    code, _ = await fails(
        s.UpdateTenant(
            pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", code_execution_allowed=True)),
            metadata=as_tenant("acme", "tenant-admin,admin"),
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    before = (await s.GetTenant(pb.GetTenantRequest(tenant="acme"))).tenant
    assert before.code_execution_allowed is False
    updated = (
        await s.UpdateTenant(
            pb.UpdateTenantRequest(
                tenant=pb.Tenant(name="acme", code_execution_allowed=True, max_models=3, etag=before.etag),
                update_mask=FieldMask(paths=["code_execution_allowed"]),
            )
        )
    ).tenant
    assert updated.code_execution_allowed and updated.max_models == 0 and updated.etag != before.etag
    code, details = await fails(
        s.UpdateTenant(pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", max_models=2, etag=before.etag)))
    )
    assert code is grpc.StatusCode.ABORTED and "changed since it was read" in details
    code, details = await fails(
        s.UpdateTenant(
            pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme"), update_mask=FieldMask(paths=["name"]))
        )
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "code_execution_allowed" in details
    code, _ = await fails(
        s.UpdateTenant(pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", max_models=-1)))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await fails(s.UpdateTenant(pb.UpdateTenantRequest(tenant=pb.Tenant(name="nope", max_models=1))))
    assert code is grpc.StatusCode.NOT_FOUND
    implied = (
        await s.UpdateTenant(pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", display_name="Acme")))
    ).tenant
    assert implied.display_name == "Acme" and implied.code_execution_allowed


async def test_code_backends_need_code_execution_allowed_at_register_and_deploy(reg: Reg) -> None:
    s = reg.stub
    await _tenants(s, "acme")
    a = as_tenant("acme")
    await s.CreateModel(pb.CreateModelRequest(model=pb.Model(name="code")), metadata=a)
    code, details = await fails(_version(reg, "code", a, backend="python", uri=reg.uri("code.py")))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert details == (
        "tenant 'acme' lacks code_execution_allowed; a platform administrator grants it with UpdateTenant"
    )
    await _version(reg, "code", a, backend="onnx")  # other backends need nothing
    await s.UpdateTenant(pb.UpdateTenantRequest(tenant=pb.Tenant(name="acme", code_execution_allowed=True)))
    v = await _version(reg, "code", a, backend="python", uri=reg.uri("code.py"))
    deploy = pb.UpdateDeploymentRequest(
        deployment=pb.Deployment(
            model="code", targets=[pb.DeploymentTarget(version=str(v.version), weight=100)]
        )
    )
    await s.UpdateDeployment(deploy, metadata=a)
    # revoked later: deploying the python version again is refused, undeploying is not
    await s.UpdateTenant(
        pb.UpdateTenantRequest(
            tenant=pb.Tenant(name="acme", code_execution_allowed=False),
            update_mask=FieldMask(paths=["code_execution_allowed"]),
        )
    )
    code, details = await fails(s.UpdateDeployment(deploy, metadata=a))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "code_execution_allowed" in details
    await s.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=pb.Deployment(model="code")), metadata=a)
    # the platform administrator is not bound by a tenant's permission
    await _version(reg, "code", backend="python", uri=reg.uri("code.py"))


# -- artifact URIs -------------------------------------------------------------------------


def _hostile(r: Reg, case: str) -> str:
    root = r.root
    outside = r.tmp / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.onnx").write_bytes(b"secret")
    if case == "symlink-out":
        link = root / "escape.onnx"
        if not link.exists():
            link.symlink_to(outside / "secret.onnx")
        return link.as_uri()
    if case == "symlink-dir-out":
        link = root / "escape-dir"
        if not link.exists():
            link.symlink_to(outside, target_is_directory=True)
        return (link / "secret.onnx").as_uri()
    if case == "fifo":
        fifo = root / "pipe.onnx"
        if not fifo.exists():
            os.mkfifo(fifo)
        return fifo.as_uri()
    if case == "missing-outside":
        return (outside / "no-such.onnx").as_uri()
    if case == "existing-outside":
        return (outside / "secret.onnx").as_uri()
    return {
        "etc-passwd": "file:///etc/passwd",
        "proc-environ": "file:///proc/self/environ",
        "dotdot": f"{root.as_uri()}/../outside/secret.onnx",
        "dotdot-encoded": f"{root.as_uri()}/%2e%2e/outside/secret.onnx",
        "dotdot-mixed": f"{root.as_uri()}/%2E./outside/secret.onnx",
        "double-encoded": f"{root.as_uri()}/%252e%252e/outside/secret.onnx",
        "encoded-slash": f"{root.as_uri()}/..%2foutside%2fsecret.onnx",
        "other-host": f"file://otherhost{root}/m.onnx",
        "query": f"{root.as_uri()}/m.onnx?x=1",
        "fragment": f"{root.as_uri()}/m.onnx#frag",
        "empty-query": f"{root.as_uri()}/m.onnx?",
        "nul": f"{root.as_uri()}/m.onnx\x00.txt",
        "nul-encoded": f"{root.as_uri()}/m.onnx%00",
        "very-long": f"{root.as_uri()}/" + "a" * 5000,
        "relative": "file:m.onnx",
        "http": "http://example.com/m.onnx",
        "s3": "s3://bucket/m.onnx",
        "prefix-sibling": f"{root.as_uri()}-evil/m.onnx",
        "dev-null": "file:///dev/null",
    }[case]


HOSTILE = [
    "etc-passwd",
    "proc-environ",
    "dotdot",
    "dotdot-encoded",
    "dotdot-mixed",
    "double-encoded",
    "encoded-slash",
    "symlink-out",
    "symlink-dir-out",
    "fifo",
    "other-host",
    "query",
    "fragment",
    "empty-query",
    "nul",
    "nul-encoded",
    "very-long",
    "relative",
    "http",
    "s3",
    "prefix-sibling",
    "dev-null",
    "missing-outside",
    "existing-outside",
]


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_artifact_uri_is_invalid_argument_revealing_nothing(sqlite_reg: Reg, case: str) -> None:
    reg = sqlite_reg
    await reg.stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")))
    uri = _hostile(reg, case)
    code, details = await fails(_version(reg, "m", uri=uri))
    assert code is grpc.StatusCode.INVALID_ARGUMENT, details
    assert "refused" in details or "artifact_uri" in details
    for fact in ("secret", "bytes", "exists", "size", "No such file", "Permission"):
        assert fact not in details.split("refused")[-1], details
    head = await reg.stub.ListModelVersions(pb.ListModelVersionsRequest(model="m"))
    assert not head.model_versions  # nothing committed


async def test_missing_and_existing_file_outside_roots_get_the_same_answer(reg: Reg) -> None:
    await reg.stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")))
    answers = []
    for case in ("missing-outside", "existing-outside"):
        uri = _hostile(reg, case)
        code, details = await fails(_version(reg, "m", uri=uri))
        answers.append((code, details.replace(uri, "URI")))
    assert answers[0] == answers[1]
    assert "not under an allowed artifact root" in answers[0][1]


async def test_artifact_under_any_configured_root_is_accepted(reg: Reg) -> None:
    await reg.stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")))
    second = reg.tmp / "second-root" / "dir-artifact"
    second.mkdir(parents=True)
    (second / "model.onnx").write_bytes(b"x")
    assert (await _version(reg, "m")).version == 1
    assert (await _version(reg, "m", uri=second.as_uri())).version == 2  # a folder artifact
    inside_link = reg.root / "alias.onnx"
    inside_link.symlink_to(reg.root / "m.onnx")  # a link that stays inside is fine
    assert (await _version(reg, "m", uri=inside_link.as_uri())).version == 3


# -- key rotation and time bounds (issue 13 item 5) ----------------------------------------


async def test_rotation_with_ten_thousand_year_grace_is_refused_and_nothing_breaks(reg: Reg) -> None:
    s = reg.stub
    await _tenants(s, "acme")
    key = (
        await s.CreateApiKey(pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["read"])))
    ).api_key
    head = (await s.ListDeployments(pb.ListDeploymentsRequest())).revision
    for grace in (
        Duration(seconds=TEN_THOUSAND_YEARS_S),
        Duration(seconds=7 * 86400 + 1),
        Duration(seconds=-1),
    ):
        code, details = await fails(
            s.RotateApiKey(pb.RotateApiKeyRequest(tenant="acme", key=key.key, grace_period=grace))
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT, details
        assert "REGISTRY_MAX_KEY_ROTATION_GRACE_S" in details and "604800" in details
    # nothing was committed: no change on Watch, Get/List still answer
    assert await _events(s, head, idle_s=0.5) == []
    got = (await s.GetApiKey(pb.GetApiKeyRequest(tenant="acme", key=key.key))).api_key
    assert got.etag == key.etag and not got.HasField("rotate_time")
    assert len((await s.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))).api_keys) == 1
    # the maximum itself is fine, and Watch carries it
    ok = await s.RotateApiKey(
        pb.RotateApiKeyRequest(tenant="acme", key=key.key, grace_period=Duration(seconds=7 * 86400))
    )
    assert ok.api_key.previous_secret_expire_time.seconds > 0
    events = await _events(s, head)
    assert [e.api_key.key for e in events] == [key.key]


@pytest.mark.parametrize(
    "expire",
    [
        Timestamp(seconds=1),  # the past
        Timestamp(seconds=253_402_300_800),  # year 10000
        Timestamp(seconds=10**15),
    ],
)
async def test_key_expire_time_outside_sane_range_is_invalid_argument(reg: Reg, expire: Timestamp) -> None:
    await _tenants(reg.stub, "acme")
    code, details = await fails(
        reg.stub.CreateApiKey(
            pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["read"], expire_time=expire))
        )
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "expire_time" in details
    assert not (await reg.stub.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))).api_keys


async def _insert_change(db: Database, kind: str, payload: str) -> int:
    async with db.transaction(write=True) as tx:
        row = await tx.fetchone(
            "UPDATE registry_state SET revision = revision + 1 WHERE id = 1 RETURNING revision"
        )
        assert row is not None
        await tx.execute(
            "INSERT INTO changes (revision, commit_time, tenant, model, kind, change_type, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (int(row[0]), 1, "default", "m", kind, "UPDATED", payload),
        )
        return int(row[0])


async def test_watch_skips_entries_it_cannot_decode_or_encode(reg: Reg) -> None:
    s = reg.stub
    await s.CreateModel(pb.CreateModelRequest(model=pb.Model(name="m")))
    good = json.dumps({"name": "m", "tenant": "default"})
    db = open_database(reg.url, reg.tmp, min_size=0, max_size=2, timeout_s=2.0)
    await db.open()
    try:
        bad_json = await _insert_change(db, "model", "{not json")
        far_future = await _insert_change(
            db,
            "api_key",
            json.dumps({"key": "k000000000000", "tenant": "default", "previous_expire_time": 10**19}),
        )
        bad_status = await _insert_change(
            db,
            "model_version",
            json.dumps(
                {
                    "model": "m",
                    "version": 1,
                    "artifact_uri": "",
                    "artifact_sha256": "",
                    "backend": "onnx",
                    "status": "BOGUS",
                }
            ),
        )
        after = await _insert_change(db, "model", good)
    finally:
        await db.close()
    await s.UpdateModel(pb.UpdateModelRequest(model=pb.Model(name="m", description="later")))
    events = await _events(s, 0)
    revisions = [e.revision for e in events]
    assert bad_json not in revisions and far_future not in revisions and bad_status not in revisions
    assert after in revisions and events[-1].model.description == "later"


# -- migration 2 ---------------------------------------------------------------------------


async def test_migration_maps_tenant_admin_keys_to_tenant_admin(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url, tmp_path, min_size=0, max_size=2, timeout_s=2.0)
    await db.open()
    try:
        await migrate(db, dataclasses.replace(SCHEMA, migrations=MIGRATIONS[:1]))
        async with db.transaction(write=True) as tx:
            await tx.execute("INSERT INTO tenants VALUES ('acme', '', '{}', 0, 0, 0)")
            for key, scopes in (("k000000000001", ["read", "admin"]), ("k000000000002", ["infer"])):
                await tx.execute(
                    "INSERT INTO api_keys (key, tenant, display_name, scopes, rate_limit, secret_hash, "
                    "create_time, revision) VALUES (?, 'acme', '', ?, '{}', 'x$y', 1, 1)",
                    (key, json.dumps(scopes)),
                )
        with structlog.testing.capture_logs() as logs:
            assert await migrate(db, SCHEMA) == MIGRATIONS[-1].number
        mapped = [e for e in logs if e["event"] == "registry.migration_key_admin_scope_mapped"]
        assert [(e["key"], e["tenant"]) for e in mapped] == [("k000000000001", "acme")]
        async with db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT key, scopes FROM api_keys ORDER BY key")
            tenant = await tx.fetchone("SELECT code_execution_allowed FROM tenants WHERE name = 'acme'")
        assert [(k, json.loads(v)) for k, v in rows] == [
            ("k000000000001", ["read", "tenant-admin"]),
            ("k000000000002", ["infer"]),
        ]
        assert tenant is not None and int(tenant[0]) == 0
    finally:
        await db.close()


async def test_a_far_future_time_committed_before_the_fix_still_reads_back(reg: Reg) -> None:
    """Rows written by the old RotateApiKey (a 10,000-year grace) must not make Get/ListApiKeys
    answer INTERNAL: such a time is sent as 9999-12-31."""
    s = reg.stub
    await _tenants(s, "acme")
    key = (
        await s.CreateApiKey(pb.CreateApiKeyRequest(tenant="acme", api_key=pb.ApiKey(scopes=["read"])))
    ).api_key
    db = open_database(reg.url, reg.tmp, min_size=0, max_size=2, timeout_s=2.0)
    await db.open()
    try:
        async with db.transaction(write=True) as tx:
            await tx.execute(
                "UPDATE api_keys SET previous_expire_time = ?, rotate_time = ? WHERE key = ?",
                (TEN_THOUSAND_YEARS_S * 1_000_000 + 1_800_000_000_000_000, 1_800_000_000_000_000, key.key),
            )
    finally:
        await db.close()
    got = (await s.GetApiKey(pb.GetApiKeyRequest(tenant="acme", key=key.key))).api_key
    assert got.previous_secret_expire_time.seconds == 253_402_300_799
    listed = (await s.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"))).api_keys
    assert [k.key for k in listed] == [key.key]
