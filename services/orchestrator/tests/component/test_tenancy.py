"""Tenant isolation: pipelines and executions belong to the tenant that created them; another
tenant's answers NOT_FOUND like a missing one; trusted callers see all, a tenant with the admin
scope only its own (SQLite + in-process queue and PostgreSQL + Redis)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from orchestrator_test_helpers import sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb

A = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "infer,read,write"))
B = (("x-modelserve-tenant", "globex"), ("x-modelserve-scopes", "infer,read,write"))
B_ADMIN = (("x-modelserve-tenant", "globex"), ("x-modelserve-scopes", "admin"))


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


def _ex(name: str, key: str = "") -> pb.CreateExecutionRequest:
    return pb.CreateExecutionRequest(pipeline=name, inputs=[tensor("x", [1.0])], idempotency_key=key)


async def test_other_tenants_pipelines_are_not_found(orch: Any) -> None:
    s = orch.stub
    await s.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("a1", ["double"])), metadata=A)
    await s.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("b1", ["double"])), metadata=B)

    missing = await _code(s.GetPipeline(pb.GetPipelineRequest(pipeline="nope1"), metadata=A))
    hidden = await _code(s.GetPipeline(pb.GetPipelineRequest(pipeline="b1"), metadata=A))
    assert hidden[0] == grpc.StatusCode.NOT_FOUND
    assert hidden[1] == missing[1].replace("nope1", "b1")  # same message: existence does not leak

    for call in (
        s.UpdatePipeline(pb.UpdatePipelineRequest(pipeline=sequence_pipeline("b1", ["add_one"])), metadata=A),
        s.DeletePipeline(pb.DeletePipelineRequest(pipeline="b1"), metadata=A),
        s.RunPipeline(pb.RunPipelineRequest(pipeline="b1", inputs=[tensor("x", [1.0])]), metadata=A),
        s.CreateExecution(_ex("b1"), metadata=A),
    ):
        assert (await _code(call))[0] == grpc.StatusCode.NOT_FOUND

    listed_a = await s.ListPipelines(pb.ListPipelinesRequest(), metadata=A)
    assert [p.name for p in listed_a.pipelines] == ["a1"]
    listed = await s.ListPipelines(pb.ListPipelinesRequest())  # trusted callers see every tenant
    assert [p.name for p in listed.pipelines] == ["a1", "b1"]
    admin_b = await s.ListPipelines(pb.ListPipelinesRequest(), metadata=B_ADMIN)
    assert [p.name for p in admin_b.pipelines] == ["b1"]  # "admin" grants a tenant nothing more

    # the owner can still update (owner kept) and delete
    await s.UpdatePipeline(
        pb.UpdatePipelineRequest(pipeline=sequence_pipeline("b1", ["add_one"])), metadata=B
    )
    got = await s.GetPipeline(pb.GetPipelineRequest(pipeline="b1"), metadata=B)
    assert got.pipeline.version == 2
    await s.DeletePipeline(pb.DeletePipelineRequest(pipeline="b1"), metadata=B)


async def test_other_tenants_executions_are_not_found(orch: Any) -> None:
    s = orch.stub
    await s.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("a2", ["double"])), metadata=A)
    await s.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("b2", ["double"])), metadata=B)
    ea = (await s.CreateExecution(_ex("a2", "k1"), metadata=A)).execution.execution
    created_b = await s.CreateExecution(_ex("b2", "k1"), metadata=B)  # same key, other tenant
    assert not created_b.replayed
    eb = created_b.execution.execution
    assert eb != ea

    missing = await _code(s.GetExecution(pb.GetExecutionRequest(execution="0" * 32), metadata=A))
    hidden = await _code(s.GetExecution(pb.GetExecutionRequest(execution=eb), metadata=A))
    assert hidden[0] == grpc.StatusCode.NOT_FOUND
    assert hidden[1] == missing[1].replace("0" * 32, eb)
    for call in (
        s.CancelExecution(pb.CancelExecutionRequest(execution=eb), metadata=A),
        s.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(execution=eb), metadata=A),
    ):
        assert (await _code(call))[0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in s.WatchExecution(pb.WatchExecutionRequest(execution=eb), metadata=A):
            pass
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND

    listed_a = await s.ListExecutions(pb.ListExecutionsRequest(), metadata=A)
    assert [e.execution for e in listed_a.executions] == [ea]
    assert {e.execution for e in (await s.ListExecutions(pb.ListExecutionsRequest())).executions} == {ea, eb}
    admin = await s.ListExecutions(pb.ListExecutionsRequest(), metadata=B_ADMIN)
    assert {e.execution for e in admin.executions} == {eb}  # confined to its tenant

    replay = await s.CreateExecution(_ex("a2", "k1"), metadata=A)
    assert replay.replayed and replay.execution.execution == ea
    assert replay.execution.idempotency_key == "k1"
    got = await s.GetExecution(pb.GetExecutionRequest(execution=eb), metadata=B)
    assert got.execution.execution == eb
