"""Authentication and tenancy on REST and gRPC: API keys (cached, revoked via Watch, rotated),
JWTs, scopes, another tenant's model, public routes, audit events without secrets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import jwt
import numpy as np
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc

ADMIN = "admin-bootstrap-secret"
JWT_KEY = "jwt-test-secret-that-is-long-enough-for-hs256"
INFER_KEY = "sk_infer_secret_t1"
READ_KEY = "sk_read_secret_t1"
SECRETS = [ADMIN, JWT_KEY, INFER_KEY, READ_KEY]
INFER_BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "INPUT1", "shape": [1], "datatype": "FP32", "data": [2]},
    ]
}


@pytest.fixture
def auth_settings() -> dict:
    return dict(
        auth_enabled=True,
        admin_api_key=ADMIN,
        jwt_algorithm="HS256",
        jwt_key=JWT_KEY,
        jwt_audience="modelserve",
        jwt_issuer="https://issuer.example",
        api_key_cache_ttl_s=60,
    )


@pytest.fixture
async def secured(make_gateway, registry, auth_settings) -> AsyncIterator:
    registry.add_key(INFER_KEY, "k1", "t1", ["infer"])
    registry.add_key(READ_KEY, "k2", "t1", ["read", "write"])
    registry.deploy("add", "t1", {"1": 100})
    registry.deploy("identity", "t2", {"1": 100})
    async with make_gateway(**auth_settings) as gw:
        for _ in range(250):  # until the gateway follows the registry's Watch
            if registry.watchers:
                break
            await asyncio.sleep(0.02)
        assert registry.watchers
        yield gw


def token(**claims) -> str:
    now = int(time.time())
    base = {
        "sub": "user-1",
        "tenant": "t1",
        "scope": "infer read",
        "aud": "modelserve",
        "iss": "https://issuer.example",
        "exp": now + 60,
        "nbf": now - 1,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, JWT_KEY, algorithm="HS256")


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def test_rest_auth_matrix(secured, registry) -> None:
    http = secured.http
    r = await http.post("/v2/models/add/infer", json=INFER_BODY)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == {"error": "credentials required: Authorization: Bearer <key> or x-api-key"}
    r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer("sk_wrong"))
    assert r.status_code == 401
    r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers={"authorization": "Basic abc"})
    assert r.status_code == 401
    for _ in range(3):
        r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer(INFER_KEY))
        assert r.status_code == 200, r.text
    r = await http.post("/v2/models/add/infer", json=INFER_BODY, headers={"x-api-key": INFER_KEY})
    assert r.status_code == 200
    assert registry.verify_calls == 2  # the wrong one and the good one: cached afterwards
    # Wrong scope.
    r = await http.get("/v1/models/add", headers=bearer(INFER_KEY))
    assert r.status_code == 403 and "needs scope 'read'" in r.json()["message"]
    r = await http.post("/v2/repository/models/add/unload", headers=bearer(INFER_KEY))
    assert r.status_code == 403  # the model repository needs admin
    # The tenant travels downstream as metadata.
    r = await http.get("/v1/models/add", headers=bearer(READ_KEY))
    assert r.status_code == 200 and r.json()["model"]["tenant"] == "t1"
    assert registry.last_metadata["x-modelserve-tenant"] == "t1"
    # Another tenant's model is NOT_FOUND (existence does not leak).
    r = await http.post("/v2/models/identity/infer", json=INFER_BODY, headers=bearer(INFER_KEY))
    assert r.status_code == 404 and r.json() == {"error": "model 'identity' not found in the repository"}
    r = await http.get("/v2/models/identity", headers=bearer(INFER_KEY))
    assert r.status_code == 404
    # Public routes.
    assert (await http.get("/v2/health/live")).status_code == 200
    assert (await http.get("/v2/health/ready")).status_code == 200
    assert (await http.get("/openapi.json")).status_code == 200
    assert (await http.get("/docs")).status_code == 200
    # The bootstrap admin sees everything (no tenant metadata downstream).
    r = await http.post(
        "/v2/models/identity/infer", json={"inputs": [INFER_BODY["inputs"][0]]}, headers=bearer(ADMIN)
    )
    assert r.status_code == 200
    r = await http.get("/v1/models/x", headers=bearer(ADMIN))
    assert r.status_code == 200 and "x-modelserve-tenant" not in registry.last_metadata


async def test_revoked_key_refused_within_a_second(secured, registry) -> None:
    h = bearer(INFER_KEY)
    assert (await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=h)).status_code == 200
    registry.revoke("k1")
    deadline = time.monotonic() + 1.0
    status = 200
    while time.monotonic() < deadline:
        status = (await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=h)).status_code
        if status == 401:
            break
        await asyncio.sleep(0.02)
    assert status == 401


async def test_rotated_key_works_in_grace_and_not_after(secured, registry) -> None:
    registry.add_key("sk_old", "k9", "t1", ["infer"], expire_at=time.time() + 0.6)
    registry.add_key("sk_new", "k9", "t1", ["infer"])
    for secret in ("sk_old", "sk_new"):
        r = await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer(secret))
        assert r.status_code == 200
    await asyncio.sleep(0.7)
    r = await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer("sk_old"))
    assert r.status_code == 401
    r = await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer("sk_new"))
    assert r.status_code == 200


async def test_jwt_matrix(secured) -> None:
    http = secured.http

    async def status(tok: str) -> int:
        return (await http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer(tok))).status_code

    assert await status(token()) == 200
    assert await status(token(exp=int(time.time()) - 10)) == 401
    assert await status(token(nbf=int(time.time()) + 60)) == 401
    assert await status(token(aud="someone-else")) == 401
    assert await status(token(iss="https://evil.example")) == 401
    assert await status(token(tenant=None)) == 401
    assert await status(token(scope="read")) == 403
    forged = jwt.encode(
        {
            "sub": "x",
            "tenant": "t1",
            "scope": "admin",
            "aud": "modelserve",
            "iss": "https://issuer.example",
            "exp": int(time.time()) + 60,
        },
        "another-secret-of-sufficient-length!!",
        algorithm="HS256",
    )
    assert await status(forged) == 401
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(
        b'{"sub":"x","tenant":"t1","scope":"admin","aud":"modelserve","exp":9999999999}'
    ).decode()
    assert await status(f"{header}.{payload}.") == 401
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    es = jwt.encode(
        {
            "sub": "x",
            "tenant": "t1",
            "scope": "infer",
            "aud": "modelserve",
            "iss": "https://issuer.example",
            "exp": int(time.time()) + 60,
        },
        pem,
        algorithm="ES256",
    )
    assert await status(es) == 401  # only HS256 is configured
    # Another tenant's model by JWT.
    r = await http.post("/v2/models/identity/infer", json=INFER_BODY, headers=bearer(token()))
    assert r.status_code == 404


async def test_es256_jwt_when_configured(make_gateway, registry, auth_settings) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    registry.deploy("add", "t1", {"1": 100})
    async with make_gateway(**(auth_settings | {"jwt_algorithm": "ES256", "jwt_key": pub.decode()})) as gw:
        claims = {
            "sub": "x",
            "tenant": "t1",
            "scope": "infer",
            "aud": "modelserve",
            "iss": "https://issuer.example",
            "exp": int(time.time()) + 60,
        }
        r = await gw.http.post(
            "/v2/models/add/infer",
            json=INFER_BODY,
            headers=bearer(jwt.encode(claims, pem, algorithm="ES256")),
        )
        assert r.status_code == 200, r.text
        r = await gw.http.post(
            "/v2/models/add/infer",
            json=INFER_BODY,
            headers=bearer(jwt.encode(claims, JWT_KEY, algorithm="HS256")),
        )
        assert r.status_code == 401


def _infer_request(model: str) -> inf_pb.ModelInferRequest:
    req = inf_pb.ModelInferRequest(model_name=model)
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="FP32", shape=[1])
        req.raw_input_contents.append(np.ones(1, dtype=np.float32).tobytes())
    return req


async def test_grpc_auth_matrix(secured, registry) -> None:
    async with grpc.aio.insecure_channel(secured.grpc_target) as ch:
        inf = inf_grpc.GRPCInferenceServiceStub(ch)
        reg = reg_grpc.RegistryServiceStub(ch)

        async def code(coro) -> grpc.StatusCode:
            try:
                await coro
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        assert await code(inf.ModelInfer(_infer_request("add"), timeout=5)) is grpc.StatusCode.UNAUTHENTICATED
        assert (
            await code(inf.ModelInfer(_infer_request("add"), metadata=[("x-api-key", "bad")], timeout=5))
            is grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            await code(inf.ModelInfer(_infer_request("add"), metadata=[("x-api-key", INFER_KEY)], timeout=5))
            is grpc.StatusCode.OK
        )
        assert (
            await code(
                inf.ModelInfer(
                    _infer_request("add"), metadata=[("authorization", f"Bearer {token()}")], timeout=5
                )
            )
            is grpc.StatusCode.OK
        )
        assert (
            await code(
                inf.ModelInfer(_infer_request("identity"), metadata=[("x-api-key", INFER_KEY)], timeout=5)
            )
            is grpc.StatusCode.NOT_FOUND
        )
        assert (
            await code(
                reg.GetModel(
                    reg_pb.GetModelRequest(model="m"), metadata=[("x-api-key", INFER_KEY)], timeout=5
                )
            )
            is grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            await code(
                reg.GetModel(
                    reg_pb.GetModelRequest(model="m"),
                    metadata=[("x-api-key", READ_KEY), ("x-modelserve-tenant", "t2")],
                    timeout=5,
                )
            )
            is grpc.StatusCode.OK
        )
        assert registry.last_metadata["x-modelserve-tenant"] == "t1"  # a client cannot pick its tenant
        assert (
            await code(inf.ServerLive(inf_pb.ServerLiveRequest(), timeout=5)) is grpc.StatusCode.OK
        )  # public


async def test_audit_events_for_writes_and_failures_without_secrets(secured) -> None:
    with structlog.testing.capture_logs() as logs:
        await secured.http.post("/v2/models/add/infer", json=INFER_BODY, headers=bearer("sk_not_a_key_1234"))
        await secured.http.post("/v1/models", json={"name": "m1"}, headers=bearer(READ_KEY))
        await secured.http.post("/v1/models", json={"name": "m2"}, headers=bearer(INFER_KEY))
        await secured.http.get("/v1/models/x", headers=bearer(token(exp=1)))
    audits = [e for e in logs if e.get("event") == "audit"]
    outcomes = [(e["action"].rsplit("/", 1)[-1], e["outcome"], e["who"], e["tenant"]) for e in audits]
    assert ("ModelInfer", "UNAUTHENTICATED", "unknown", "") in outcomes
    assert ("CreateModel", "OK", "k2", "t1") in outcomes
    assert ("CreateModel", "PERMISSION_DENIED", "k1", "t1") in outcomes
    assert ("GetModel", "UNAUTHENTICATED", "unknown", "") in outcomes
    assert all(e["request_id"] for e in audits)
    text = repr(logs)
    for secret in [*SECRETS, "sk_not_a_key_1234", token(exp=1)]:
        assert secret not in text


async def test_all_model_statistics_show_a_tenant_only_its_own_models(secured) -> None:
    http = secured.http
    r = await http.get("/v2/models/stats", headers=bearer(INFER_KEY))
    assert r.status_code == 200
    assert [s["name"] for s in r.json()["model_stats"]] == ["add"]  # t2's "identity" is left out
    r = await http.get("/v2/models/stats", headers=bearer(ADMIN))
    assert r.status_code == 200
    assert sorted(s["name"] for s in r.json()["model_stats"]) == ["add", "identity"]


async def test_grpc_statistics_without_a_model_name_filtered_for_a_tenant(secured) -> None:
    async with grpc.aio.insecure_channel(secured.grpc_target) as ch:
        stub = inf_grpc.GRPCInferenceServiceStub(ch)
        r = await stub.ModelStatistics(inf_pb.ModelStatisticsRequest(), metadata=[("x-api-key", INFER_KEY)])
        assert [s.name for s in r.model_stats] == ["add"]  # t2's "identity" is left out, as on REST
        r = await stub.ModelStatistics(inf_pb.ModelStatisticsRequest(), metadata=[("x-api-key", ADMIN)])
        assert sorted(s.name for s in r.model_stats) == ["add", "identity"]


# -- tenant-admin and the platform administrator (issue 12 item 5) -------------------------


def test_scope_table_tenant_admin_and_platform_admin() -> None:
    from modelserve_gateway.scopes import has_scope, is_write, required_scope

    reg = "/modelserve.registry.v1.RegistryService"
    for m in ("CreateApiKey", "GetApiKey", "ListApiKeys", "RotateApiKey", "DeleteApiKey"):
        assert required_scope(f"{reg}/{m}") == "tenant-admin", m
    for m in ("CreateTenant", "ListTenants", "UpdateTenant", "VerifyApiKey"):
        assert required_scope(f"{reg}/{m}") == "admin", m
    assert is_write(f"{reg}/UpdateTenant") and is_write(f"{reg}/RotateApiKey")
    assert not is_write(f"{reg}/VerifyApiKey")
    ta = frozenset({"tenant-admin"})
    assert all(has_scope(ta, s) for s in ("read", "write", "infer", "tenant-admin"))
    assert not has_scope(ta, "admin")
    assert all(
        has_scope(frozenset({"admin"}), s) for s in ("read", "write", "infer", "tenant-admin", "admin")
    )
    assert not has_scope(frozenset({"read", "write", "infer"}), "tenant-admin")


async def test_tenant_credentials_admin_scope_means_tenant_admin(secured, registry) -> None:
    """A tenant JWT's or (pre-migration) API key's "admin" is "tenant-admin": its own keys, yes;
    tenants, key verification and the model repository, no; always confined to its tenant."""
    registry.add_key("sk_legacy_admin_t1", "k7", "t1", ["admin"])
    http = secured.http
    for creds in (bearer(token(scope="admin")), bearer("sk_legacy_admin_t1")):
        r = await http.get("/v1/models/x", headers=creds)  # read implied by tenant-admin
        assert r.status_code == 200, r.text
        assert registry.last_metadata["x-modelserve-tenant"] == "t1"
        assert registry.last_metadata["x-modelserve-scopes"] == "tenant-admin"
        for method, path in (
            ("GET", "/v1/tenants"),
            ("POST", "/v1/tenants"),
            ("PATCH", "/v1/tenants/t1"),
            ("POST", "/v1/apiKeys:verify"),
            ("POST", "/v2/repository/models/add/unload"),
        ):
            r = await http.request(method, path, json={}, headers=creds)
            assert r.status_code == 403, (method, path, r.text)
        r = await http.get("/v1/tenants/t1/apiKeys", headers=creds)  # its own keys: admitted
        assert r.status_code != 403 and r.status_code != 401, r.text
    # read/write keys do not manage keys
    r = await http.get("/v1/tenants/t1/apiKeys", headers=bearer(READ_KEY))
    assert r.status_code == 403 and "tenant-admin" in r.json()["message"]


PLATFORM = "https://platform.example"


async def test_jwt_platform_admin_only_through_the_configured_claim(
    make_gateway, registry, auth_settings
) -> None:
    async def probe(gw, tok: str) -> tuple[int, dict[str, str]]:
        registry.last_metadata = {}
        r = await gw.http.get("/v1/models/x", headers=bearer(tok))
        return r.status_code, dict(registry.last_metadata)

    # not configured: a token claiming platform_admin is a tenant token like any other
    async with make_gateway(**auth_settings) as gw:
        code, md = await probe(gw, token(platform_admin=True, scope="admin read"))
        assert code == 200 and md["x-modelserve-tenant"] == "t1"
        assert await probe(gw, token(platform_admin=True, tenant=None)) == (401, {})
    settings = auth_settings | {"jwt_platform_admin_claim": "platform_admin"}
    async with make_gateway(**settings) as gw:
        code, md = await probe(gw, token(platform_admin=True, tenant=None, scope=None))
        assert code == 200 and "x-modelserve-tenant" not in md  # trusted downstream
        r = await gw.http.get("/v1/tenants", headers=bearer(token(platform_admin=True, tenant=None)))
        assert r.status_code != 403
        for fake in ("true", 1, "yes", False):  # only JSON true counts
            code, md = await probe(gw, token(platform_admin=fake, scope="admin read"))
            assert code == 200 and md["x-modelserve-tenant"] == "t1", fake
            assert md["x-modelserve-scopes"] == "read,tenant-admin"
        forged = jwt.encode(
            {
                "sub": "x",
                "platform_admin": True,
                "aud": "modelserve",
                "iss": "https://issuer.example",
                "exp": int(time.time()) + 60,
            },
            "another-secret-of-sufficient-length!!",
            algorithm="HS256",
        )
        assert (await probe(gw, forged))[0] == 401


async def test_jwt_platform_admin_issuer_narrows_the_claim(make_gateway, registry, auth_settings) -> None:
    settings = auth_settings | {
        "jwt_platform_admin_claim": "platform_admin",
        "jwt_platform_admin_issuer": PLATFORM,
    }
    async with make_gateway(**settings) as gw:

        async def probe(tok: str) -> tuple[int, dict[str, str]]:
            registry.last_metadata = {}
            r = await gw.http.get("/v1/models/x", headers=bearer(tok))
            return r.status_code, dict(registry.last_metadata)

        code, md = await probe(token(iss=PLATFORM, platform_admin=True, tenant=None))
        assert code == 200 and "x-modelserve-tenant" not in md
        # the claim from the tenants' issuer is not enough
        code, md = await probe(token(platform_admin=True))
        assert code == 200 and md["x-modelserve-tenant"] == "t1"
        assert (await probe(token(platform_admin=True, tenant=None)))[0] == 401
        # the platform issuer without the claim is refused, and other issuers stay refused
        assert (await probe(token(iss=PLATFORM)))[0] == 401
        assert (await probe(token(iss="https://evil.example", platform_admin=True, tenant=None)))[0] == 401


async def test_platform_admin_issuer_without_claim_is_a_configuration_error(
    make_gateway, auth_settings
) -> None:
    with pytest.raises(ValueError, match="PLATFORM_ADMIN_CLAIM"):
        async with make_gateway(**(auth_settings | {"jwt_platform_admin_issuer": PLATFORM})):
            pass


async def test_revoked_key_refused_on_the_grpc_door_after_cached_calls(secured, registry) -> None:
    """The Principal and Admission built for a cached key are reused only while the key cache
    answers with that key: a revocation (Watch) refuses the next calls, as on REST."""
    md = [("x-api-key", INFER_KEY)]
    async with grpc.aio.insecure_channel(secured.grpc_target) as ch:
        inf = inf_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(3):  # verified once, then served from the caches
            await inf.ModelInfer(_infer_request("add"), metadata=md, timeout=5)
        registry.revoke("k1")
        # what is asserted is that the cached Principal/Admission do not outlive the revocation,
        # not how fast the Watch event arrives (a loaded machine decides that): a generous wait
        deadline = time.monotonic() + 30.0
        code = grpc.StatusCode.OK
        while time.monotonic() < deadline:
            try:
                await inf.ModelInfer(_infer_request("add"), metadata=md, timeout=5)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                break
            await asyncio.sleep(0.02)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        # other credentials of the tenant still pass
        await inf.ModelInfer(
            _infer_request("add"), metadata=[("authorization", f"Bearer {token()}")], timeout=5
        )
