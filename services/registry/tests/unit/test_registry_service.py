"""Unit layer of the registry's rules: RegistryService over an in-memory fake of the store's
transaction interface (a real class over dicts, copied in and out like rows, rolled back when
the transaction raises), plus the pure checks of validation.py, paging.py, api_keys.py and
watch.py. No database, no gRPC: the component tests cover the wire and the SQL."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from modelserve_common.identity import Caller
from modelserve_registry import errors
from modelserve_registry.api_keys import check_scopes, hash_secret, secret_expiry, secret_matches
from modelserve_registry.core import Limits
from modelserve_registry.domain import (
    Alias,
    ApiKey,
    Deployment,
    KeySecrets,
    Model,
    ModelVersion,
    RateLimit,
    Target,
    Tenant,
)
from modelserve_registry.paging import next_token, open_page
from modelserve_registry.service import RegistryService
from modelserve_registry.store import RegistryStore
from modelserve_registry.validation import check_name, check_targets, parse_filter, parse_order_by
from modelserve_registry.versions import check_transition
from modelserve_registry.watch import start_revision

SHA = "a" * 64


class _State:
    def __init__(self) -> None:
        self.revision = 0
        self.changes: list[tuple[int, str, str, str, Any]] = []
        self.tenants: dict[str, Tenant] = {}
        self.models: dict[str, Model] = {}
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.aliases: dict[tuple[str, str], Alias] = {}
        self.deployments: dict[str, Deployment] = {}
        self.previous_deployments: dict[str, Deployment | None] = {}
        self.keys: dict[str, tuple[ApiKey, KeySecrets]] = {}


class FakeTx:
    """The StoreTx methods the service calls, over plain dicts."""

    def __init__(self, state: _State) -> None:
        self.s = state

    async def record(self, change_type: str, tenant: str, model: str, resource: Any) -> int:
        self.s.revision += 1
        resource.revision = self.s.revision
        self.s.changes.append((self.s.revision, change_type, tenant, model, copy.deepcopy(resource)))
        return self.s.revision

    async def revisions(self) -> tuple[int, int]:
        return self.s.revision, 0

    async def get_tenant(self, name: str) -> Tenant | None:
        return copy.deepcopy(self.s.tenants.get(name))

    async def insert_tenant(self, t: Tenant) -> None:
        self.s.tenants[t.name] = copy.deepcopy(t)

    async def update_tenant(self, t: Tenant) -> None:
        self.s.tenants[t.name] = copy.deepcopy(t)

    async def get_model(self, name: str) -> Model | None:
        return copy.deepcopy(self.s.models.get(name))

    async def count_models(self, tenant: str) -> int:
        return sum(m.tenant == tenant for m in self.s.models.values())

    async def insert_model(self, m: Model) -> None:
        self.s.models[m.name] = copy.deepcopy(m)

    async def update_model(self, m: Model) -> None:
        latest = self.s.models[m.name].latest_version
        self.s.models[m.name] = copy.deepcopy(m)
        self.s.models[m.name].latest_version = latest

    async def delete_model(self, name: str) -> None:
        del self.s.models[name]

    async def next_version_number(self, name: str) -> int:
        self.s.models[name].latest_version += 1
        return self.s.models[name].latest_version

    async def get_version(self, model: str, version: int) -> ModelVersion | None:
        return copy.deepcopy(self.s.versions.get((model, version)))

    async def insert_version(self, v: ModelVersion) -> None:
        self.s.versions[(v.model, v.version)] = copy.deepcopy(v)

    async def update_version(self, v: ModelVersion) -> None:
        self.s.versions[(v.model, v.version)] = copy.deepcopy(v)

    async def delete_version(self, model: str, version: int) -> None:
        del self.s.versions[(model, version)]
        for key in [k for k, a in self.s.aliases.items() if a.model == model and a.version == version]:
            del self.s.aliases[key]

    async def get_alias(self, model: str, alias: str) -> Alias | None:
        return copy.deepcopy(self.s.aliases.get((model, alias)))

    async def list_aliases(self, model: str) -> list[Alias]:
        return [copy.deepcopy(a) for (m, _), a in sorted(self.s.aliases.items()) if m == model]

    async def upsert_alias(self, a: Alias) -> None:
        self.s.aliases[(a.model, a.alias)] = copy.deepcopy(a)

    async def delete_alias(self, model: str, alias: str) -> None:
        del self.s.aliases[(model, alias)]

    async def get_deployment(self, model: str) -> Deployment | None:
        return copy.deepcopy(self.s.deployments.get(model))

    async def upsert_deployment(self, d: Deployment) -> None:
        self.s.deployments[d.model] = copy.deepcopy(d)

    async def set_previous_deployment(self, model: str, previous: Deployment | None) -> None:
        self.s.previous_deployments[model] = copy.deepcopy(previous)

    async def get_previous_deployment(self, model: str) -> Deployment | None:
        return copy.deepcopy(self.s.previous_deployments.get(model))

    async def list_deployments(self, tenant: str | None) -> list[Deployment]:
        found = sorted(self.s.deployments.items())
        return [copy.deepcopy(d) for m, d in found if tenant is None or self.s.models[m].tenant == tenant]

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        keys = sorted(self.s.keys.items())
        return [copy.deepcopy(k) for _, (k, _) in keys if k.tenant == tenant and k.revoke_time is None]

    async def get_key(self, key: str) -> tuple[ApiKey, KeySecrets] | None:
        return copy.deepcopy(self.s.keys.get(key))

    async def insert_key(self, k: ApiKey, secrets: KeySecrets) -> None:
        self.s.keys[k.key] = copy.deepcopy((k, secrets))

    async def update_key(self, k: ApiKey, secrets: KeySecrets) -> None:
        self.s.keys[k.key] = copy.deepcopy((k, secrets))


class FakeStore:
    """RegistryStore.transaction over one in-memory state; a transaction that raises leaves
    the state as it was."""

    def __init__(self) -> None:
        self.state = _State()

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[FakeTx]:
        before = copy.deepcopy(self.state)
        try:
            yield FakeTx(self.state)
        except BaseException:
            self.state = before
            raise


ADMIN = Caller(tenant=None, scopes=frozenset({"read", "write", "infer", "tenant-admin", "admin"}))


def tenant_caller(tenant: str, *scopes: str) -> Caller:
    return Caller(tenant=tenant, scopes=frozenset(scopes or ("read", "write")))


@pytest.fixture
async def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def service(fake: FakeStore, tmp_path: Path) -> RegistryService:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    limits = Limits(max_page_size=3, max_tags=2, max_text_bytes=200, artifact_roots=(tmp_path,))
    svc = RegistryService(cast(RegistryStore, fake), limits)
    for name in ("acme", "globex"):
        await svc.create_tenant(ADMIN, Tenant(name=name))
    return svc


def version(backend: str = "onnx", uri: str = "") -> ModelVersion:
    return ModelVersion(model="", version=0, artifact_uri=uri, artifact_sha256=SHA, backend=backend)


async def add_version(fake: FakeStore, model: str, number: int, status: str = "READY") -> None:
    fake.state.models[model].latest_version = number
    v = version()
    v.model, v.version, v.status = model, number, status
    fake.state.versions[(model, number)] = v


# -- models ----------------------------------------------------------------------------------
async def test_create_model_tenant_caller_owns_it_whatever_tenant_it_names(service: RegistryService) -> None:
    created = await service.create_model(tenant_caller("acme"), Model(name="m1", tenant="globex"))
    assert created.tenant == "acme" and created.revision == 3


async def test_create_model_taken_name_is_already_exists_without_owner(service: RegistryService) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.ModelAlreadyExists) as exc:
        await service.create_model(tenant_caller("globex"), Model(name="m1", tenant=""))
    assert "acme" not in exc.value.message


async def test_create_model_over_quota_is_refused_and_nothing_stored(
    service: RegistryService, fake: FakeStore
) -> None:
    fake.state.tenants["acme"].max_models = 1
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.ModelQuotaExceeded):
        await service.create_model(tenant_caller("acme"), Model(name="m2", tenant=""))
    assert set(fake.state.models) == {"m1"}


async def test_create_model_shared_by_tenant_is_platform_only(service: RegistryService) -> None:
    with pytest.raises(errors.PlatformOnly):
        await service.create_model(tenant_caller("acme"), Model(name="m1", tenant="", shared=True))


async def test_create_model_bounds_description_and_tags(service: RegistryService) -> None:
    with pytest.raises(errors.InvalidField, match="at most 200 allowed"):
        await service.create_model(tenant_caller("acme"), Model(name="m1", tenant="", description="x" * 201))
    with pytest.raises(errors.InvalidField, match="at most 2 allowed"):
        await service.create_model(
            tenant_caller("acme"), Model(name="m1", tenant="", tags={"a": "", "b": "", "c": ""})
        )


async def test_get_model_of_other_tenant_is_not_found_like_a_missing_one(service: RegistryService) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.ModelNotFound) as hidden:
        await service.get_model(tenant_caller("globex"), "m1")
    with pytest.raises(errors.ModelNotFound) as missing:
        await service.get_model(tenant_caller("globex"), "m2")
    assert hidden.value.message == missing.value.message.replace("m2", "m1")


async def test_shared_model_readable_by_others_but_read_only(service: RegistryService) -> None:
    await service.create_model(ADMIN, Model(name="m1", tenant="acme", shared=True))
    assert (await service.get_model(tenant_caller("globex"), "m1")).shared
    with pytest.raises(errors.SharedModelReadOnly):
        await service.update_model(
            tenant_caller("globex"), Model(name="m1", tenant="", description="x"), "", ["description"]
        )


async def test_update_model_stale_etag_is_refused(service: RegistryService) -> None:
    created = await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await service.update_model(
        tenant_caller("acme"), Model(name="m1", tenant="", description="a"), "", ["description"]
    )
    with pytest.raises(errors.EtagMismatch):
        await service.update_model(
            tenant_caller("acme"),
            Model(name="m1", tenant="", description="b"),
            str(created.revision),
            ["description"],
        )


async def test_update_model_unknown_mask_path_is_invalid(service: RegistryService) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.InvalidField, match="allowed: description, tags, shared"):
        await service.update_model(tenant_caller("acme"), Model(name="m1", tenant=""), "", ["tenant"])


async def test_update_model_shared_toggle_follows_to_deployment(
    service: RegistryService, fake: FakeStore
) -> None:
    await service.create_model(ADMIN, Model(name="m1", tenant="acme"))
    fake.state.deployments["m1"] = Deployment(model="m1", tenant="acme")
    await service.update_model(ADMIN, Model(name="m1", tenant="", shared=True), "", ["shared"])
    assert fake.state.deployments["m1"].shared is True


async def test_delete_model_still_deployed_is_refused(service: RegistryService, fake: FakeStore) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    fake.state.deployments["m1"] = Deployment(
        model="m1", tenant="acme", targets=[Target(version=1, weight=100)]
    )
    with pytest.raises(errors.StillDeployed):
        await service.delete_model(tenant_caller("acme"), "m1", "")
    assert "m1" in fake.state.models


async def test_list_models_tenant_caller_needs_read_scope(service: RegistryService) -> None:
    with pytest.raises(errors.MissingScope, match="'read' scope"):
        await service.list_models(
            tenant_caller("acme", "infer"), filter="", order_by="", page_size=0, page_token=""
        )


# -- versions, aliases, deployments ------------------------------------------------------------
async def test_create_version_code_backend_needs_tenant_permission(
    service: RegistryService, fake: FakeStore, tmp_path: Path
) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    uri = f"file://{tmp_path}/model.onnx"
    with pytest.raises(errors.CodeExecutionNotAllowed):
        await service.create_version(tenant_caller("acme"), "m1", version("python", uri))
    assert fake.state.versions == {}
    created = await service.create_version(tenant_caller("acme"), "m1", version("onnx", uri))
    assert (created.version, created.status) == (1, "PENDING")
    fake.state.tenants["acme"].code_execution_allowed = True
    assert (await service.create_version(tenant_caller("acme"), "m1", version("python", uri))).version == 2


async def test_create_version_without_artifact_uri_is_invalid(service: RegistryService) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.InvalidField, match="artifact_uri is required"):
        await service.create_version(tenant_caller("acme"), "m1", version())


async def test_get_version_by_alias_and_latest(service: RegistryService, fake: FakeStore) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await add_version(fake, "m1", 1)
    await add_version(fake, "m1", 2)
    await service.set_alias(tenant_caller("acme"), "m1", "prod", "1", "")
    assert (await service.get_version(tenant_caller("acme"), "m1", "prod")).version == 1
    assert (await service.get_version(tenant_caller("acme"), "m1", "latest")).version == 2
    with pytest.raises(errors.ModelVersionNotFound, match="no version or alias 'beta'"):
        await service.get_version(tenant_caller("acme"), "m1", "beta")


async def test_set_alias_latest_is_reserved(service: RegistryService) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    with pytest.raises(errors.InvalidField, match="not be 'latest'"):
        await service.set_alias(tenant_caller("acme"), "m1", "latest", "1", "")


async def test_update_version_illegal_transition_keeps_status(
    service: RegistryService, fake: FakeStore
) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await add_version(fake, "m1", 1, status="READY")
    change = version()
    change.model, change.version, change.status = "m1", 1, "PENDING"
    with pytest.raises(errors.InvalidTransition):
        await service.update_version(tenant_caller("acme"), change, "", ["status"])
    assert fake.state.versions[("m1", 1)].status == "READY"


async def test_delete_version_drops_its_aliases(service: RegistryService, fake: FakeStore) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await add_version(fake, "m1", 1)
    await service.set_alias(tenant_caller("acme"), "m1", "prod", "1", "")
    await service.delete_version(tenant_caller("acme"), "m1", "1", "")
    assert await service.list_aliases(tenant_caller("acme"), "m1") == []
    deleted = [c for c in fake.state.changes if c[1] == "DELETED"]
    assert [type(c[4]).__name__ for c in deleted] == ["Alias", "ModelVersion"]


async def test_update_deployment_failed_version_is_refused(service: RegistryService, fake: FakeStore) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await add_version(fake, "m1", 1, status="FAILED")
    d = Deployment(model="m1", tenant="", targets=[Target(version=0, weight=100, requested="1")])
    with pytest.raises(errors.InvalidTransition, match="targets\\[0\\]: version 1 is FAILED"):
        await service.update_deployment(tenant_caller("acme"), d, "")


async def test_update_deployment_resolves_aliases_to_numbers(
    service: RegistryService, fake: FakeStore
) -> None:
    await service.create_model(tenant_caller("acme"), Model(name="m1", tenant=""))
    await add_version(fake, "m1", 1)
    await add_version(fake, "m1", 2)
    await service.set_alias(tenant_caller("acme"), "m1", "prod", "2", "")
    d = Deployment(
        model="m1",
        tenant="",
        targets=[
            Target(version=0, weight=100, requested="prod"),
            Target(version=0, weight=0, mirror=True, requested="1"),
        ],
    )
    result = await service.update_deployment(tenant_caller("acme"), d, "")
    assert [(t.version, t.weight, t.mirror) for t in result.targets] == [(2, 100, False), (1, 0, True)]
    listed, revision = await service.list_deployments(tenant_caller("globex"))
    assert listed == [] and revision == fake.state.revision
    listed, _ = await service.list_deployments(tenant_caller("acme"))
    assert [d.model for d in listed] == ["m1"]


# -- tenants and keys --------------------------------------------------------------------------
async def test_tenant_admin_of_one_tenant_cannot_create_tenants(service: RegistryService) -> None:
    with pytest.raises(errors.MissingScope, match="platform administrator"):
        await service.create_tenant(tenant_caller("acme", "tenant-admin", "admin"), Tenant(name="t3"))


async def test_update_tenant_sets_only_masked_fields(service: RegistryService) -> None:
    t = Tenant(name="acme", display_name="ACME", max_models=5, code_execution_allowed=True)
    updated = await service.update_tenant(ADMIN, t, "", ["code_execution_allowed"])
    assert updated.code_execution_allowed and updated.display_name == "" and updated.max_models == 0
    with pytest.raises(errors.InvalidField, match="update_mask is required"):
        await service.update_tenant(ADMIN, t, "", [])
    with pytest.raises(errors.InvalidField, match="max_models must be >= 0"):
        await service.update_tenant(ADMIN, Tenant(name="acme", max_models=-1), "", ["max_models"])


async def test_key_lifecycle_create_rotate_verify_revoke(service: RegistryService) -> None:
    admin_of_acme = tenant_caller("acme", "tenant-admin")
    key, secret = await service.create_key(admin_of_acme, "acme", ApiKey(key="", tenant="", scopes=["read"]))
    found, limit, expires = await service.verify_key(ADMIN, secret)
    assert found.key == key.key and found.scopes == ["read"] and expires is None
    assert limit == RateLimit()
    _, new_secret = await service.rotate_key(admin_of_acme, "acme", key.key, 0.0, "")
    with pytest.raises(errors.InvalidApiKey):
        await service.verify_key(ADMIN, secret)  # grace 0: the old secret stops at once
    await service.verify_key(ADMIN, new_secret)
    await service.delete_key(admin_of_acme, "acme", key.key)
    with pytest.raises(errors.InvalidApiKey):
        await service.verify_key(ADMIN, new_secret)
    with pytest.raises(errors.ApiKeyNotFound):
        await service.get_key(admin_of_acme, "acme", key.key)


async def test_keys_of_another_tenant_are_tenant_not_found(service: RegistryService) -> None:
    with pytest.raises(errors.TenantNotFound):
        await service.list_keys(tenant_caller("acme", "tenant-admin"), "globex")


async def test_rotate_key_grace_above_limit_is_invalid(service: RegistryService) -> None:
    admin_of_acme = tenant_caller("acme", "tenant-admin")
    key, _ = await service.create_key(admin_of_acme, "acme", ApiKey(key="", tenant="", scopes=["read"]))
    with pytest.raises(errors.InvalidField, match="REGISTRY_MAX_KEY_ROTATION_GRACE_S"):
        await service.rotate_key(admin_of_acme, "acme", key.key, 31 * 86400.0, "")


# -- pure checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "A", "-a", "a..b", "a" * 64])
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(errors.InvalidField):
        check_name("model", name)


def test_parse_filter_and_order_by() -> None:
    assert parse_filter('name = "a\\"b" AND tags.team : "x"') == [
        ("name", "=", 'a"b'),
        ("tags.team", ":", "x"),
    ]
    with pytest.raises(errors.InvalidField, match="cannot filter on 'owner'"):
        parse_filter('owner = "x"')
    assert parse_order_by("update_time desc, name") == [("update_time", True), ("name", False)]
    assert parse_order_by("") == [("name", False)]
    with pytest.raises(errors.InvalidField):
        parse_order_by("name up")


def test_page_tokens_are_bound_to_their_query() -> None:
    page = open_page("", 10, "f1", max_page_size=5)
    assert (page.offset, page.size) == (0, 5)
    token = next_token(page, 5)
    assert open_page(token, 5, "f1", 5).offset == 5
    assert next_token(page, 4) == ""
    with pytest.raises(errors.InvalidField, match="different filter"):
        open_page(token, 5, "f2", 5)
    with pytest.raises(errors.InvalidField, match="not a token"):
        open_page("!!", 5, "f1", 5)
    with pytest.raises(errors.InvalidField, match="page_size must be >= 0"):
        open_page("", -1, "f1", 5)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([Target(version=1, weight=60), Target(version=1, weight=40)], "listed twice"),
        ([Target(version=1, weight=90)], "must sum to 100"),
        ([Target(version=1, weight=0, mirror=True)], "at least one non-mirror"),
        (
            [Target(version=1, weight=100), Target(version=2, weight=5, mirror=True)],
            "mirror target must have weight 0",
        ),
    ],
)
def test_check_targets_refuses(targets: list[Target], message: str) -> None:
    with pytest.raises(errors.InvalidField, match=message):
        check_targets(targets)


def test_check_transition() -> None:
    check_transition("PENDING", "READY")
    with pytest.raises(errors.InvalidField, match="status must be one of"):
        check_transition("PENDING", "GONE")


def test_check_scopes_refuses_platform_and_unheld_scopes() -> None:
    admin_of_acme = tenant_caller("acme", "tenant-admin")
    assert check_scopes(admin_of_acme, ["write", "read", "read"]) == ["read", "write"]
    with pytest.raises(errors.InvalidField, match="platform-only"):
        check_scopes(admin_of_acme, ["admin"])
    with pytest.raises(errors.MissingScope):
        check_scopes(tenant_caller("acme", "read"), ["write"])


def test_secret_expiry_previous_secret_only_inside_grace() -> None:
    key = ApiKey(key="k000000000000", tenant="acme", scopes=["read"])
    stored = KeySecrets(hash_secret("new"), hash_secret("old"), 2_000)
    assert secret_expiry(key, stored, "new", now=1_000) is None
    assert secret_expiry(key, stored, "old", now=1_000) == 2_000
    with pytest.raises(errors.InvalidApiKey):
        secret_expiry(key, stored, "old", now=2_000)
    assert not secret_matches(None, "x")


def test_start_revision() -> None:
    assert start_revision(-1, head=9, compacted=3) == 9
    assert start_revision(5, head=9, compacted=3) == 5
    with pytest.raises(errors.RevisionCompacted):
        start_revision(2, head=9, compacted=3)
