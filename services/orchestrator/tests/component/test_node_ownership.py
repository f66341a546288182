"""Pipelines never run another tenant's model: every model node is checked with the tenant's
identity when a pipeline is created or updated and again when a run, a stream or an execution
starts, and every model call carries the identity so the model server enforces it too. The fake
model server enforces ownership from the metadata like the real one; a fake registry (our own
RegistryService contract, in memory) answers GetModel per tenant like the real one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from orchestrator_test_helpers import make_settings, model_node, outputs, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_orchestrator.server import running_server

A = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "write,infer,read"))
B = (("x-modelserve-tenant", "globex"), ("x-modelserve-scopes", "infer,read,write"))
A_ADMIN = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "admin,infer,write"))
X = [1.0, -2.0, 3.0]
TERMINAL = {pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_FAILED, pb.EXECUTION_STATE_CANCELLED}


class FakeRegistry(registry_grpc.RegistryServiceServicer):
    """GetModel as the registry answers it: a tenant sees its own models and shared ones, another
    tenant's answers NOT_FOUND like a missing one; a call without tenant metadata sees all."""

    def __init__(self) -> None:
        self.models: dict[str, tuple[str, bool]] = {}  # name -> (owner tenant, shared)
        self.seen: list[tuple[str, str | None, str]] = []  # (model, tenant, scopes)
        self._lock = threading.Lock()

    def GetModel(
        self, request: registry_pb.GetModelRequest, context: grpc.ServicerContext
    ) -> registry_pb.GetModelResponse:
        md = dict(context.invocation_metadata())
        tenant = md.get("x-modelserve-tenant") or None
        with self._lock:
            self.seen.append((request.model, tenant, str(md.get("x-modelserve-scopes", ""))))
            found = self.models.get(request.model)
        if found is None or (tenant is not None and found[0] != tenant and not found[1]):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} not found")
        owner, shared = found
        return registry_pb.GetModelResponse(
            model=registry_pb.Model(name=request.model, tenant=owner, shared=shared)
        )


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    registry_grpc.add_RegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.target = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    fake.server = server  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        server.stop(0).wait()


async def _stub(settings: Any) -> AsyncIterator[pb_grpc.OrchestratorServiceStub]:
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            yield pb_grpc.OrchestratorServiceStub(ch)
        await asyncio.sleep(0.1)


@pytest.fixture
async def solo(tmp_path: Path, models: Any) -> AsyncIterator[pb_grpc.OrchestratorServiceStub]:
    """An orchestrator (SQLite, in-process queue) without a registry: the model server decides."""
    async for stub in _stub(make_settings(tmp_path, models.target)):
        yield stub


@pytest.fixture
async def with_registry(
    tmp_path: Path, models: Any, registry: FakeRegistry
) -> AsyncIterator[pb_grpc.OrchestratorServiceStub]:
    settings = make_settings(tmp_path, models.target, registry_url=registry.target)  # type: ignore[attr-defined]
    async for stub in _stub(settings):
        yield stub


async def _error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


def _branching(name: str, left: str, right: str, third: str) -> pb.Pipeline:
    """inputs -> splitter -> {l: left, r: right}; both -> ensemble; a switch picks s: third."""
    nodes = [
        pb.Node(
            name="sp",
            splitter=pb.SplitterNode(targets=[{"target": "l", "weight": 1}, {"target": "r", "weight": 1}]),
        ),
        model_node("l", left, "inputs.x"),
        model_node("r", right, "inputs.x"),
        pb.Node(
            name="ens",
            ensemble=pb.EnsembleNode(sources=["l.y", "r.y"], combiner=pb.COMBINER_MEAN, min_sources=1),
        ),
        pb.Node(
            name="sw",
            switch=pb.SwitchNode(
                cases=[
                    {
                        "condition": {"parameter": "route", "operator": pb.OPERATOR_EQ, "text": "s"},
                        "target": "s",
                    }
                ]
            ),
        ),
        model_node("s", third, "ens.output"),
    ]
    return pb.Pipeline(
        name=name,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1]}],
        nodes=nodes,
        outputs=[pb.PipelineOutput(name="y", sources=["s.y", "ens.output"])],
    )


def _run(name: str, **params: str) -> pb.RunPipelineRequest:
    return pb.RunPipelineRequest(pipeline=name, inputs=[tensor("x", X)], parameters=params)


async def test_tenant_cannot_name_another_tenants_or_a_platform_model(solo: Any, models: Any) -> None:
    fake = models.servicer
    fake.owners = {"double": "acme", "neg": "globex"}
    fake.shared = {"identity"}

    # another tenant's model, at depth (a switch target after an ensemble of splitter branches)
    code, msg = await _error(
        solo.CreatePipeline(
            pb.CreatePipelineRequest(pipeline=_branching("p1", "double", "identity", "neg")), metadata=A
        )
    )
    assert (code, msg) == (grpc.StatusCode.NOT_FOUND, "node 's': model 'neg' not found")
    # a local platform model that is not shared, and a model nobody has: the same answer
    for model in ("square", "ghost"):
        code, msg = await _error(
            solo.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("p2", ["double", model])), metadata=A
            )
        )
        assert (code, msg) == (grpc.StatusCode.NOT_FOUND, f"node 'n1': model {model!r} not found")
    # "admin" in a tenant's scopes grants nothing platform-wide
    code, _ = await _error(
        solo.CreatePipeline(
            pb.CreatePipelineRequest(pipeline=sequence_pipeline("p3", ["square"])), metadata=A_ADMIN
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    listed = await solo.ListPipelines(pb.ListPipelinesRequest())
    assert list(listed.pipelines) == []

    # its own and shared models are fine; an update cannot add another tenant's model
    created = await solo.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=_branching("mine", "double", "identity", "double")), metadata=A
    )
    assert created.pipeline.version == 1
    code, msg = await _error(
        solo.UpdatePipeline(
            pb.UpdatePipelineRequest(pipeline=_branching("mine", "double", "neg", "double")), metadata=A
        )
    )
    assert (code, msg) == (grpc.StatusCode.NOT_FOUND, "node 'r': model 'neg' not found")
    got = await solo.GetPipeline(pb.GetPipelineRequest(pipeline="mine"), metadata=A)
    assert got.pipeline.version == 1

    # trusted callers keep today's behaviour: any model
    await solo.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("platform", ["square", "neg"]))
    )
    resp = await solo.RunPipeline(_run("platform"))
    np.testing.assert_allclose(outputs(resp)["y"], -(np.array(X) ** 2))

    # the check asked the model server with A's identity; B's model was never called for A
    asked = [(m, t, s) for r, m, t, s in fake.seen if r == "ModelMetadata"]
    assert ("neg", "acme", "infer,read,write") in asked
    assert "neg" not in fake.seen_by("acme") and "square" not in fake.seen_by("acme")
    assert fake.seen_by(None) == ["square", "neg"]


async def test_identity_reaches_the_model_server_on_every_node_call(solo: Any, models: Any) -> None:
    fake = models.servicer
    fake.owners = {"double": "acme"}
    fake.shared = {"identity", "add_one"}
    await solo.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=_branching("p", "double", "identity", "add_one")), metadata=A
    )
    start = len(fake.seen)
    resp = await solo.RunPipeline(_run("p", route="s"), metadata=A)
    [branch] = [t.model_name for t in resp.trace if t.node in ("l", "r") and t.model_name]
    assert [t.node for t in resp.trace if t.model_name] in (["l", "s"], ["r", "s"])
    async for _ in solo.StreamPipelineRun(
        pb.StreamPipelineRunRequest(pipeline="p", inputs=[tensor("x", X)], parameters={"route": "s"}),
        metadata=A,
    ):
        pass
    calls = [(m, t, s) for r, m, t, s in fake.seen[start:] if r == "ModelInfer"]
    assert len(calls) == 4 and calls[0][0] == branch and calls[1][0] == "add_one"
    assert all(t == "acme" and s == "infer,read,write" for _, t, s in calls)
    # each run first checked every model of the pipeline (once per distinct model) as acme
    checks = [(m, t) for r, m, t, _ in fake.seen[start:] if r == "ModelMetadata"]
    assert sorted(checks) == sorted([(m, "acme") for m in ("double", "identity", "add_one")] * 2)


async def _wait_terminal(stub: Any, eid: str, within_s: float = 15.0) -> pb.Execution:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        ex = (await stub.GetExecution(pb.GetExecutionRequest(execution=eid))).execution
        if ex.state in TERMINAL:
            return ex
        await asyncio.sleep(0.05)
    raise TimeoutError(f"execution {eid} not terminal")


async def test_model_moved_to_another_tenant_fails_run_stream_and_execution(orch: Any, models: Any) -> None:
    """PostgreSQL + Redis and SQLite: an execution runs as the tenant stored with it."""
    s, fake = orch.stub, models.servicer
    fake.owners = {"double": "acme"}
    fake.shared = {"add_one"}
    await s.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("p", ["add_one", "double"])), metadata=A
    )
    before = await s.RunPipeline(_run("p"), metadata=A)
    np.testing.assert_allclose(outputs(before)["y"], (np.array(X) + 1) * 2)
    early = (
        await s.CreateExecution(pb.CreateExecutionRequest(pipeline="p", inputs=[tensor("x", X)]), metadata=A)
    ).execution
    assert (await _wait_terminal(s, early.execution)).state == pb.EXECUTION_STATE_SUCCEEDED

    fake.owners = {"double": "globex"}  # transferred
    called = len(fake.seen_by("acme"))
    expected = (grpc.StatusCode.NOT_FOUND, "node 'n1': model 'double' not found")
    assert await _error(s.RunPipeline(_run("p"), metadata=A)) == expected
    stream = s.StreamPipelineRun(
        pb.StreamPipelineRunRequest(pipeline="p", inputs=[tensor("x", X)]), metadata=A
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stream:
            pass
    assert (exc.value.code(), exc.value.details()) == expected
    created = (
        await s.CreateExecution(pb.CreateExecutionRequest(pipeline="p", inputs=[tensor("x", X)]), metadata=A)
    ).execution
    ex = await _wait_terminal(s, created.execution)
    assert ex.state == pb.EXECUTION_STATE_FAILED and ex.error == "node 'n1': model 'double' not found"
    assert list(ex.trace) == []  # nothing ran
    assert len(fake.seen_by("acme")) == called  # no model was called for acme after the transfer

    # a trusted caller's execution of the same pipeline runs as a trusted caller
    trusted = (
        await s.CreateExecution(pb.CreateExecutionRequest(pipeline="p", inputs=[tensor("x", X)]))
    ).execution
    assert (await _wait_terminal(s, trusted.execution)).state == pb.EXECUTION_STATE_SUCCEEDED
    assert fake.seen_by(None)[-2:] == ["add_one", "double"]

    # moved back: A runs again
    fake.owners = {"double": "acme"}
    again = await s.RunPipeline(_run("p"), metadata=A)
    np.testing.assert_allclose(outputs(again)["y"], (np.array(X) + 1) * 2)


async def test_registry_decides_first_then_the_model_server(
    with_registry: Any, models: Any, registry: FakeRegistry
) -> None:
    s, fake = with_registry, models.servicer
    fake.models["theirs"] = fake.models["identity"]
    fake.models["common"] = fake.models["neg"]
    fake.owners = {"theirs": "globex"}
    fake.shared = {"identity", "common"}
    registry.models = {"mine": ("acme", False), "theirs": ("globex", False), "common": ("globex", True)}

    # an own registry model that is not deployed yet may be named (a run then fails on the call)
    await s.CreatePipeline(pb.CreatePipelineRequest(pipeline=sequence_pipeline("p1", ["mine"])), metadata=A)
    code, _ = await _error(s.RunPipeline(_run("p1"), metadata=A))
    assert code == grpc.StatusCode.NOT_FOUND
    # a shared registry model and a shared local model may be named
    await s.CreatePipeline(
        pb.CreatePipelineRequest(pipeline=sequence_pipeline("p2", ["common", "identity"])), metadata=A
    )
    resp = await s.RunPipeline(_run("p2"), metadata=A)
    np.testing.assert_allclose(outputs(resp)["y"], -np.array(X))
    # another tenant's registry model is refused without asking the model server; a local
    # platform model that is not shared is refused by the model server
    for model in ("theirs", "double"):
        code, msg = await _error(
            s.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("p3", ["identity", model])), metadata=A
            )
        )
        assert (code, msg) == (grpc.StatusCode.NOT_FOUND, f"node 'n1': model {model!r} not found")
    metadata_asks = [m for r, m, t, _ in fake.seen if r == "ModelMetadata" and t == "acme"]
    assert "theirs" not in metadata_asks and "mine" not in metadata_asks and "double" in metadata_asks
    # the registry was asked with A's tenant and the read scope
    assert ("theirs", "acme", "read") in registry.seen

    # ownership moves in the registry (and on the model server): A's pipeline stops running
    registry.models["common"] = ("globex", False)
    fake.shared = {"identity"}
    called = len(fake.seen_by("acme"))
    code, msg = await _error(s.RunPipeline(_run("p2"), metadata=A))
    assert (code, msg) == (grpc.StatusCode.NOT_FOUND, "node 'n0': model 'common' not found")
    assert len(fake.seen_by("acme")) == called


async def test_registry_outage_fails_closed(with_registry: Any, models: Any, registry: FakeRegistry) -> None:
    registry.models = {"mine": ("acme", False)}
    registry.server.stop(0).wait()  # type: ignore[attr-defined]
    code, _ = await _error(
        with_registry.CreatePipeline(
            pb.CreatePipelineRequest(pipeline=sequence_pipeline("p", ["mine"])), metadata=A, timeout=10
        )
    )
    assert code == grpc.StatusCode.UNAVAILABLE
    listed = await with_registry.ListPipelines(pb.ListPipelinesRequest())
    assert list(listed.pipelines) == []


async def test_execution_queued_before_a_transfer_never_runs_the_new_owners_model(
    tmp_path: Path, models: Any, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Created while A owned the model (on a replica without workers), started after the model
    moved to B (by a replica with workers): FAILED at start, no model called for A. A transfer
    while an execution runs is caught by the model server on the node's call (identity sent)."""
    fake = models.servicer
    fake.owners = {"double": "acme"}
    fake.shared = {"add_one"}
    shared = dict(database_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix)
    front = make_settings(tmp_path / "front", models.target, workers=0, **shared)
    back = make_settings(tmp_path / "back", models.target, **shared)
    req = pb.CreateExecutionRequest(pipeline="p", inputs=[tensor("x", X)])
    async for s in _stub(front):
        await s.CreatePipeline(
            pb.CreatePipelineRequest(pipeline=sequence_pipeline("p", ["add_one", "double"])), metadata=A
        )
        queued = (await s.CreateExecution(req, metadata=A)).execution.execution
        fake.owners = {"double": "globex"}  # transferred while the execution waits
        called = len(fake.seen_by("acme"))
        async for worker in _stub(back):
            ex = await _wait_terminal(worker, queued)
            assert ex.state == pb.EXECUTION_STATE_FAILED
            assert ex.error == "node 'n1': model 'double' not found" and list(ex.trace) == []
            assert len(fake.seen_by("acme")) == called

            # moved during a run: the start check passed, the model server refuses the node's
            # call made with A's identity, and B's model does not run for A
            fake.owners = {"double": "acme"}
            fake.delay_s["add_one"] = 0.5
            running = (await worker.CreateExecution(req, metadata=A)).execution.execution
            for _ in range(500):  # at most ~10 s
                if "add_one" in fake.seen_by("acme")[called:]:
                    break
                await asyncio.sleep(0.02)
            fake.owners = {"double": "globex"}
            served = fake.calls["double"]
            ex = await _wait_terminal(worker, running)
            assert ex.state == pb.EXECUTION_STATE_FAILED and "not found" in ex.error
            assert fake.seen_by("acme")[-1] == "double"  # asked with A's identity...
            assert fake.calls["double"] == served  # ...and refused: B's model did not run
