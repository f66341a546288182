"""Pipelines over the wire: CRUD and versions, validation, every node kind and combiner, retries,
timeouts, soft vs hard dependencies, the streamed run (SQLite and PostgreSQL + Redis)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from orchestrator_test_helpers import model_node, outputs, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb

X = [1.0, -2.0, 3.0]


async def create(orch: Any, p: pb.Pipeline) -> pb.Pipeline:
    resp = await orch.stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=p))
    return resp.pipeline


async def run(orch: Any, name: str, x: Any = X, **kw: Any) -> pb.RunPipelineResponse:
    return await orch.stub.RunPipeline(pb.RunPipelineRequest(pipeline=name, inputs=[tensor("x", x)], **kw))


async def test_run_sequence_returns_outputs_and_trace(orch: Any) -> None:
    await create(orch, sequence_pipeline("seq", ["double", "add_one", "neg"]))
    resp = await run(orch, "seq")
    np.testing.assert_allclose(outputs(resp)["y"], -(np.array(X) * 2 + 1))
    assert [t.node for t in resp.trace] == ["n0", "n1", "n2"]
    assert all(t.status == pb.NODE_STATUS_SUCCEEDED and t.model_version == "1" for t in resp.trace)
    assert resp.trace[0].model_name == "double" and resp.trace[0].attempts == 1
    assert resp.pipeline_version == 1


async def test_update_pipeline_creates_version_and_runs_record_it(orch: Any) -> None:
    await create(orch, sequence_pipeline("ver", ["double"]))
    upd = await orch.stub.UpdatePipeline(pb.UpdatePipelineRequest(pipeline=sequence_pipeline("ver", ["neg"])))
    assert upd.pipeline.version == 2
    latest = await run(orch, "ver")
    old = await run(orch, "ver", version=1)
    assert latest.pipeline_version == 2 and old.pipeline_version == 1
    np.testing.assert_allclose(outputs(latest)["y"], -np.array(X))
    np.testing.assert_allclose(outputs(old)["y"], np.array(X) * 2)
    got = await orch.stub.GetPipeline(pb.GetPipelineRequest(pipeline="ver", version=1))
    assert got.pipeline.nodes[0].model.model.name == "double"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await create(orch, sequence_pipeline("ver", ["neg"]))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_list_and_delete_pipelines_pages(orch: Any) -> None:
    for n in ["a1", "a2", "a3"]:
        await create(orch, sequence_pipeline(n, ["double"]))
    page = await orch.stub.ListPipelines(pb.ListPipelinesRequest(page_size=2))
    assert [p.name for p in page.pipelines] == ["a1", "a2"] and page.next_page_token
    rest = await orch.stub.ListPipelines(
        pb.ListPipelinesRequest(page_size=2, page_token=page.next_page_token)
    )
    assert [p.name for p in rest.pipelines] == ["a3"] and not rest.next_page_token
    await orch.stub.DeletePipeline(pb.DeletePipelineRequest(pipeline="a2"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await orch.stub.GetPipeline(pb.GetPipelineRequest(pipeline="a2"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "a2" in exc.value.details()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.nodes.append(model_node("n0", "neg", "inputs.x")), "node 'n0': duplicate node name"),
        (
            lambda p: p.nodes.append(model_node("bad", "neg", "ghost.y")),
            "node 'bad': reference 'ghost.y': no node",
        ),
        (lambda p: p.nodes.append(model_node("bad", "neg", "inputs.z")), "declares no input 'z'"),
        (lambda p: p.nodes.append(model_node("bad", "neg", "n0.zz")), "node 'n0' produces ['y']"),
        (
            lambda p: p.nodes.append(model_node("Bad Name", "neg", "inputs.x")),
            "node 'Bad Name': invalid name",
        ),
        (lambda p: p.nodes.append(model_node("inputs", "neg", "inputs.x")), "node 'inputs': invalid name"),
        (lambda p: p.nodes.append(pb.Node(name="empty")), "node 'empty': a node needs a kind"),
        (
            lambda p: p.nodes.extend([model_node("c1", "neg", "c2.y"), model_node("c2", "neg", "c1.y")]),
            "dependency cycle among ['c1', 'c2']",
        ),
        (
            lambda p: p.nodes.append(pb.Node(name="ens", ensemble=pb.EnsembleNode(sources=["n0.y", "n0.y"]))),
            "node 'ens': an ensemble needs a combiner",
        ),
        (
            lambda p: p.nodes.append(
                pb.Node(
                    name="ens",
                    ensemble=pb.EnsembleNode(
                        sources=["n0.y", "n1.y"], combiner=pb.COMBINER_WEIGHTED_MEAN, weights=[1]
                    ),
                )
            ),
            "WEIGHTED_MEAN needs one positive weight per source",
        ),
        (
            lambda p: p.nodes.append(pb.Node(name="sw", switch=pb.SwitchNode(cases=[{"target": "ghost"}]))),
            "node 'sw': case 0: the condition needs exactly one of tensor or parameter",
        ),
        (
            lambda p: p.nodes.append(
                pb.Node(name="sp", splitter=pb.SplitterNode(targets=[{"target": "ghost", "weight": 1}]))
            ),
            "node 'sp': target 'ghost' is not a node",
        ),
        (lambda p: p.outputs.add(name="o2", sources=["nope.y"]), "output 'o2': reference 'nope.y': no node"),
    ],
)
async def test_create_pipeline_invalid_is_invalid_argument_naming_node(
    orch: Any, mutate: Any, expected: str
) -> None:
    p = sequence_pipeline("bad", ["double", "neg"])
    mutate(p)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await create(orch, p)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in exc.value.details()


async def test_run_wrong_inputs_is_invalid_argument(orch: Any) -> None:
    await create(orch, sequence_pipeline("inp", ["double"]))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await orch.stub.RunPipeline(pb.RunPipelineRequest(pipeline="inp", inputs=[tensor("z", X)]))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missing ['x'], unexpected ['z']" in exc.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await orch.stub.RunPipeline(
            pb.RunPipelineRequest(pipeline="inp", inputs=[tensor("x", [1], np.int64)])
        )
    assert "expected datatype FP32, got INT64" in exc.value.details()


def ensemble_pipeline(name: str, combiner: int, members: list[str], **ens: Any) -> pb.Pipeline:
    outs = ens.pop("outs", ["y"])
    nodes = [model_node(f"m{i}", m, "inputs.x", outs=list(outs)) for i, m in enumerate(members)]
    key = ens.pop("key", "y")
    soft = ens.pop("soft", set())
    for n in nodes:
        if n.model.model.name in soft:
            n.dependency = pb.DEPENDENCY_SOFT
    nodes.append(
        pb.Node(
            name="ens",
            ensemble=pb.EnsembleNode(
                sources=[f"m{i}.{key}" for i in range(len(members))], combiner=combiner, **ens
            ),
        )
    )
    return pb.Pipeline(
        name=name,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1]}],
        nodes=nodes,
        outputs=[pb.PipelineOutput(name="out", sources=["ens.output"])],
    )


async def test_ensemble_combiners(orch: Any) -> None:
    x = np.array(X, dtype=np.float32)
    cases = [
        ("mean", pb.COMBINER_MEAN, ["double", "neg", "identity"], {}, (2 * x - x + x) / 3),
        ("wmean", pb.COMBINER_WEIGHTED_MEAN, ["double", "neg"], {"weights": [3, 1]}, (3 * 2 * x - x) / 4),
        ("concat", pb.COMBINER_CONCAT, ["double", "neg"], {"axis": 0}, np.concatenate([2 * x, -x])),
    ]
    for name, comb, members, extra, expected in cases:
        await create(orch, ensemble_pipeline(name, comb, members, **extra))
        resp = await run(orch, name)
        np.testing.assert_allclose(outputs(resp)["out"], expected, rtol=1e-6)
        # the members ran in parallel before the ensemble
        assert resp.trace[-1].node == "ens"
    await create(
        orch,
        ensemble_pipeline(
            "vote", pb.COMBINER_MAJORITY_VOTE, ["label", "label", "label"], outs=["label"], key="label"
        ),
    )
    resp = await run(orch, "vote")
    np.testing.assert_array_equal(outputs(resp)["out"], np.array([1, 0, 1]))


async def test_soft_dependency_failure_continues_and_hard_fails(orch: Any) -> None:
    await create(orch, ensemble_pipeline("soft", pb.COMBINER_MEAN, ["double", "broken"], soft={"broken"}))
    resp = await run(orch, "soft")
    np.testing.assert_allclose(outputs(resp)["out"], np.array(X) * 2)
    by = {t.node: t for t in resp.trace}
    assert by["m1"].status == pb.NODE_STATUS_FAILED and by["m1"].error_code == "INVALID_ARGUMENT"
    assert "sources missing: ['m1.y']" in by["ens"].message
    await create(orch, ensemble_pipeline("hard", pb.COMBINER_MEAN, ["double", "broken"]))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run(orch, "hard")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node 'm1' failed" in exc.value.details()


async def test_soft_failure_reports_missing_output(orch: Any) -> None:
    p = sequence_pipeline("miss", ["double"])
    p.nodes.append(model_node("extra", "broken", "inputs.x", dependency=pb.DEPENDENCY_SOFT))
    p.outputs.add(name="z", sources=["extra.y"])
    await create(orch, p)
    resp = await run(orch, "miss")
    assert list(resp.missing_outputs) == ["z"] and set(outputs(resp)) == {"y"}


async def test_retry_unavailable_then_succeeds(orch: Any, models: Any) -> None:
    p = sequence_pipeline("retry", ["double"])
    p.nodes[0].retry.max_attempts = 3
    await create(orch, p)
    models.servicer.failures["double"] = 2
    resp = await run(orch, "retry")
    assert resp.trace[0].attempts == 3 and resp.trace[0].status == pb.NODE_STATUS_SUCCEEDED
    models.servicer.failures["double"] = 5
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run(orch, "retry")
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "warming up" in exc.value.details()


async def test_node_timeout_is_deadline_exceeded(orch: Any, models: Any) -> None:
    p = sequence_pipeline("slow", ["double"])
    p.nodes[0].timeout.FromMilliseconds(100)
    p.nodes[0].retry.max_attempts = 1
    await create(orch, p)
    models.servicer.delay_s["double"] = 0.5
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run(orch, "slow")
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "node 'n0'" in exc.value.details()


def branch_pipeline(name: str, gate: pb.Node) -> pb.Pipeline:
    return pb.Pipeline(
        name=name,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1]}],
        nodes=[
            model_node("pre", "identity", "inputs.x"),
            gate,
            model_node("small", "double", "pre.y"),
            model_node("big", "neg", "pre.y"),
        ],
        outputs=[pb.PipelineOutput(name="y", sources=["small.y", "big.y"])],
    )


async def test_switch_on_tensor_and_parameter(orch: Any) -> None:
    gate = pb.Node(
        name="gate",
        switch=pb.SwitchNode(
            cases=[
                pb.SwitchCase(
                    condition=pb.Condition(parameter="mode", operator=pb.OPERATOR_EQ, text="big"),
                    target="big",
                ),
                pb.SwitchCase(
                    condition=pb.Condition(
                        tensor="pre.y", reduce=pb.REDUCE_MAX, operator=pb.OPERATOR_GT, number=10
                    ),
                    target="big",
                ),
            ],
            default_target="small",
        ),
    )
    await create(orch, branch_pipeline("sw", gate))
    small = await run(orch, "sw")
    np.testing.assert_allclose(outputs(small)["y"], np.array(X) * 2)
    by = {t.node: t for t in small.trace}
    assert by["gate"].chosen_target == "small" and by["big"].status == pb.NODE_STATUS_SKIPPED
    assert "not chosen by 'gate'" in by["big"].message
    big = await run(orch, "sw", x=[1.0, 20.0])
    np.testing.assert_allclose(outputs(big)["y"], [-1.0, -20.0])
    param = await run(orch, "sw", parameters={"mode": "big"})
    np.testing.assert_allclose(outputs(param)["y"], -np.array(X))


async def test_splitter_weights_and_sticky_key(orch: Any) -> None:
    gate = pb.Node(
        name="split",
        splitter=pb.SplitterNode(
            targets=[pb.WeightedTarget(target="small", weight=1), pb.WeightedTarget(target="big", weight=1)],
            sticky_parameter="user",
        ),
    )
    await create(orch, branch_pipeline("ab", gate))
    chosen = set()
    for _ in range(3):
        resp = await run(orch, "ab", parameters={"user": "alice"})
        chosen.add({t.node: t for t in resp.trace}["split"].chosen_target)
    assert len(chosen) == 1  # sticky
    users = set()
    for i in range(30):
        resp = await run(orch, "ab", parameters={"user": f"u{i}"})
        users.add({t.node: t for t in resp.trace}["split"].chosen_target)
    assert users == {"small", "big"}  # both arms get traffic


async def test_stream_run_sends_each_node_then_result(orch: Any) -> None:
    await create(orch, sequence_pipeline("st", ["double", "add_one"]))
    msgs = [
        m
        async for m in orch.stub.StreamPipelineRun(
            pb.StreamPipelineRunRequest(pipeline="st", inputs=[tensor("x", X)])
        )
    ]
    kinds = [m.WhichOneof("event") for m in msgs]
    assert kinds == ["node_result", "node_result", "result"]
    assert msgs[0].node_result.trace.node == "n0"
    assert msgs[0].node_result.outputs[0].name == "n0.y"
    np.testing.assert_allclose(outputs(msgs[-1].result)["y"], np.array(X) * 2 + 1)


async def test_unknown_pipeline_is_not_found(orch: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run(orch, "nope")
    assert (
        exc.value.code() == grpc.StatusCode.NOT_FOUND and "pipeline 'nope' not found" in exc.value.details()
    )
