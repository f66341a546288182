"""The SDK end to end against the real suite (four processes, SQLite): admin creates a tenant
and keys; the tenant registers, deploys and infers; pipelines apply/run/stream; executions
submit/watch/wait; keys rotate and revoke; refusals map to the exception hierarchy with the
server's message and a request id; AsyncClient under concurrency on one channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelserve_client import (
    AlreadyExists,
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    RateLimited,
    Unauthenticated,
)

from .conftest import ADMIN, FEATURES, Suite, key_refused, model_ready, wait_until

pytestmark = [pytest.mark.e2e]

PIPELINE: dict[str, Any] = {
    "name": "sdk-pipe",
    "description": "one model node",
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
    "nodes": [
        {
            "name": "clf",
            "model": {
                "model": {"name": "sdk-clf"},
                "inputs": [{"name": "features", "source": "inputs.features"}],
                "outputs": ["label", "probabilities"],
            },
        }
    ],
    "outputs": [{"name": "label", "sources": ["clf.label"]}],
}


@pytest.fixture(scope="module")
def admin(suite: Suite) -> Iterator[Client]:
    with Client(suite.url, api_key=ADMIN, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def tenant(suite: Suite, admin: Client) -> Iterator[tuple[Client, str]]:
    admin.create_tenant("sdk-t", "SDK tenant")
    created = admin.create_key("sdk-t", ["tenant-admin"], "sdk")
    secret = created["secret"]
    with Client(suite.url, api_key=secret, timeout=20) as c:
        c.create_model("sdk-clf", "the classifier")
        c.create_version("sdk-clf", **suite.onnx_version_fields())
        c.deploy("sdk-clf", {"1": 100})
        wait_until(lambda: model_ready(c, "sdk-clf"), 60, "sdk-clf ready")
        yield c, secret


def test_infer_numpy_in_and_out_by_version_and_alias(tenant: tuple[Client, str]) -> None:
    c, _ = tenant
    x = np.asarray(FEATURES, dtype=np.float32)
    out = c.infer("sdk-clf", {"features": x})
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (1, 3)
    assert out["label"].dtype == np.int64 and out["label"].shape == (1, 1)
    assert abs(float(out["probabilities"].sum()) - 1.0) < 1e-4
    c.set_alias("sdk-clf", "production", 1)

    def alias_routes() -> bool:  # the model server follows the registry's watch
        try:
            c.infer("sdk-clf", {"features": x}, alias="production")
        except NotFound:
            return False
        return True

    wait_until(alias_routes, 30, "alias production routed")
    by_alias = c.infer("sdk-clf", {"features": x}, alias="production", outputs=["label"])
    assert list(by_alias) == ["label"] and by_alias["label"].tolist() == out["label"].tolist()
    streamed = list(c.infer_stream("sdk-clf", [{"features": x}, {"features": x * 0}], version=1))
    assert len(streamed) == 2 and streamed[0]["label"].tolist() == out["label"].tolist()
    md = c.model_metadata("sdk-clf")
    assert md["inputs"][0]["name"] == "features"
    assert c.get_deployment("sdk-clf")["targets"][0]["weight"] == 100


def test_listings_follow_pages(tenant: tuple[Client, str]) -> None:
    c, _ = tenant
    for i in range(3):
        c.create_model(f"sdk-page-{i}")
    names = [m["name"] for m in c.list_models(page_size=1)]
    assert {"sdk-clf", "sdk-page-0", "sdk-page-1", "sdk-page-2"} <= set(names)
    assert len(names) == len(set(names))
    assert [v["version"] for v in c.list_versions("sdk-clf", page_size=1)] == ["1"]


def test_refusals_map_to_the_hierarchy_with_message_and_request_id(
    suite: Suite, tenant: tuple[Client, str]
) -> None:
    c, _ = tenant
    with pytest.raises(NotFound) as nf:
        c.infer("no-such-model", {"features": np.zeros((1, 4), np.float32)})
    assert nf.value.request_id and len(nf.value.request_id) >= 16
    assert "no-such-model" in nf.value.message and "NOT_FOUND" in str(nf.value)
    with pytest.raises(AlreadyExists):
        c.create_model("sdk-clf")
    with pytest.raises(InvalidArgument):
        c.infer("sdk-clf", {"features": np.zeros((1, 5), np.float32)})
    with Client(suite.url, api_key="wrong-key", timeout=10) as bad, pytest.raises(Unauthenticated) as ua:
        bad.list_deployments()
    assert ua.value.request_id


def test_pipeline_apply_run_stream_submit_watch_wait(tenant: tuple[Client, str]) -> None:
    c, _ = tenant
    x = np.asarray(FEATURES, dtype=np.float32)
    first = c.apply(PIPELINE)
    second = c.apply({**PIPELINE, "description": "updated"})
    assert (first["name"], int(second["version"])) == ("sdk-pipe", int(first["version"]) + 1)
    res = c.run("sdk-pipe", {"features": x})
    assert res["outputs"]["label"].shape == (1, 1)
    assert [t["node"] for t in res["trace"]] == ["clf"] and res["trace"][0][
        "status"
    ] == "NODE_STATUS_SUCCEEDED"
    events = list(c.stream("sdk-pipe", {"features": x}))
    assert events[0]["node"]["node"] == "clf" and "result" in events[-1]
    ex = c.submit("sdk-pipe", {"features": x}, idempotency_key="sdk-once")
    again = c.submit("sdk-pipe", {"features": x}, idempotency_key="sdk-once")
    assert again["execution"] == ex["execution"]
    seen = [e.get("state") for e in c.watch(ex["execution"], timeout=60)]
    assert seen[-1] == "EXECUTION_STATE_SUCCEEDED"
    done = c.wait(ex["execution"], timeout=60)
    assert done["state"] == "EXECUTION_STATE_SUCCEEDED"
    assert done["outputs"]["label"].tolist() == res["outputs"]["label"].tolist()
    assert ex["execution"] in [e["execution"] for e in c.list_executions("sdk-pipe")]
    assert "sdk-pipe" in [p["name"] for p in c.list_pipelines()]


def test_key_rotate_with_grace_and_revoke(suite: Suite, admin: Client) -> None:
    created = admin.create_key("sdk-t", ["read"], "rotating")
    key_id, old = created["api_key"]["key"], created["secret"]
    rotated = admin.rotate_key("sdk-t", key_id, grace_s=60)
    new = rotated["secret"]
    assert new and new != old
    for secret in (old, new):
        with Client(suite.url, api_key=secret, timeout=10) as c:
            assert isinstance(c.list_deployments(), list)
    admin.revoke_key("sdk-t", key_id)
    wait_until(lambda: key_refused(suite.url, new), 30, "revoked key refused")
    assert key_id not in [k["key"] for k in admin.list_keys("sdk-t") if not k.get("revoke_time")]


def test_rate_limited_carries_retry_after(suite: Suite, admin: Client, tenant: tuple[Client, str]) -> None:
    slow = admin.create_key("sdk-t", ["infer", "read"], "slow", rate_limit=0.2, burst=1)
    x = np.asarray(FEATURES, dtype=np.float32)
    with Client(suite.url, api_key=slow["secret"], timeout=10) as c:
        deadline = time.monotonic() + 10
        with pytest.raises(RateLimited) as rl:
            while time.monotonic() < deadline:
                c.infer("sdk-clf", {"features": x})
    assert rl.value.retry_after is not None and rl.value.retry_after >= 1
    assert rl.value.request_id


def test_async_client_under_concurrency(suite: Suite, tenant: tuple[Client, str]) -> None:
    _, secret = tenant
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 8, size=(1, 4)).astype(np.float32) for _ in range(64)]
    with Client(suite.url, api_key=secret) as sync:
        expected = [sync.infer("sdk-clf", {"features": b})["label"].tolist() for b in batches]

    async def main() -> list[Any]:
        async with AsyncClient(suite.url, api_key=secret, timeout=30) as ac:
            sem = asyncio.Semaphore(32)

            async def one(b: np.ndarray) -> Any:
                async with sem:
                    return (await ac.infer("sdk-clf", {"features": b}))["label"].tolist()

            got = await asyncio.gather(*(one(b) for b in batches))
            names = [m["name"] async for m in ac.list_models(page_size=2)]
            assert "sdk-clf" in names
            with pytest.raises(NotFound):
                await ac.get_model("nope-async")
            return list(got)

    assert asyncio.run(main()) == expected
