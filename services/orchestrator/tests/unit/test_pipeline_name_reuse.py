"""A pipeline name reused by another tenant never runs (or notifies) the first tenant's
executions: claim and the webhook builder match the execution's tenant, and deleting a pipeline
is refused while any of its executions is queued or running (SQLite store, no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelserve_common.errors import FailedPrecondition
from modelserve_common.identity import PLATFORM_OWNER
from modelserve_common.migrations import migrate
from modelserve_orchestrator.db import open_database
from modelserve_orchestrator.domain import Execution, ExecutionState, Pipeline, Webhook
from modelserve_orchestrator.migrations import SCHEMA
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.webhooks import DeliveryBuilder


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OrchestratorStore]:
    db = open_database(f"sqlite:///{tmp_path}/orch.db", tmp_path, min_size=1, max_size=2, timeout_s=5.0)
    await db.open()
    try:
        await migrate(db, SCHEMA)
        yield OrchestratorStore(db)
    finally:
        await db.close()


def _execution(eid: str, webhook: Webhook | None = None) -> Execution:
    return Execution(
        id=eid,
        pipeline="p",
        pipeline_version=1,
        state=ExecutionState.QUEUED,
        parameters={},
        webhook=webhook,
        create_time=1.0,
    )


async def test_delete_is_refused_while_an_execution_is_pending(store: OrchestratorStore) -> None:
    await store.put_pipeline(Pipeline(name="p"), new=True, now=1.0, owner="globex")
    await store.create_execution(_execution("e" * 32), "{}", "h", tenant="globex")
    with pytest.raises(FailedPrecondition, match="1 queued or running"):
        await store.delete_pipeline("p", tenant="globex")
    assert await store.get_pipeline("p") is not None
    await store.finish(
        "e" * 32,
        ExecutionState.CANCELLED,
        outputs={},
        missing=(),
        error="cancelled",
        now=2.0,
        owner=None,
        deliveries=(),
    )
    assert await store.delete_pipeline("p", tenant="globex")
    assert await store.get_pipeline("p") is None


async def test_reused_name_does_not_hand_another_tenant_the_execution(store: OrchestratorStore) -> None:
    # globex queued an execution of p v1, then p went away (a row deleted before the refusal
    # existed, or a race); acme takes the name: p v1 is now acme's, with acme's webhook
    await store.put_pipeline(Pipeline(name="p"), new=True, now=1.0, owner="globex")
    await store.create_execution(_execution("b" * 32), "{}", "h", tenant="globex")
    async with store.db.transaction() as tx:
        await tx.execute("DELETE FROM orch_pipelines WHERE name = ?", ("p",))
    acme_hook = Webhook(url="https://acme.example/hook")
    await store.put_pipeline(Pipeline(name="p", webhook=acme_hook), new=True, now=2.0, owner="acme")

    claimed = await store.claim("b" * 32, "worker-1", lease_until=100.0, now=3.0)
    assert claimed is not None
    assert claimed.pipeline is None  # not acme's graph: the execution fails as "pipeline deleted"
    deliveries = await DeliveryBuilder(store).build("b" * 32, ExecutionState.FAILED, "pipeline deleted")
    assert [d.url for d in deliveries] == []  # acme's webhook hears nothing of globex's execution


async def test_a_trusted_callers_execution_runs_and_notifies_a_tenants_pipeline(
    store: OrchestratorStore,
) -> None:
    hook = Webhook(url="https://acme.example/hook")
    await store.put_pipeline(Pipeline(name="p", webhook=hook), new=True, now=1.0, owner="acme")
    await store.create_execution(_execution("c" * 32), "{}", "h", tenant=PLATFORM_OWNER)
    claimed = await store.claim("c" * 32, "worker-1", lease_until=100.0, now=3.0)
    assert claimed is not None and claimed.pipeline is not None and claimed.pipeline.webhook == hook
    deliveries = await DeliveryBuilder(store).build("c" * 32, ExecutionState.SUCCEEDED, "")
    assert [d.url for d in deliveries] == [hook.url]
