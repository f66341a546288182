"""pipeline.validate without a network: a valid pipeline of every node kind passes, and each
named check refuses its case with the message the API has always given (the first failure in
check order)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from modelserve_orchestrator.domain import (
    Combiner,
    Condition,
    EnsembleStep,
    InputBinding,
    ModelStep,
    NodeSpec,
    Operator,
    Pipeline,
    PipelineOutput,
    SplitterStep,
    SwitchCase,
    SwitchStep,
    TensorSpec,
    WeightedTarget,
)
from modelserve_orchestrator.errors import InvalidPipeline
from modelserve_orchestrator.pipeline_checks import Defaults, validate


def model(name: str, source: str = "inputs.x", outputs: tuple[str, ...] = ("y",)) -> NodeSpec:
    return NodeSpec(name, ModelStep(model="m", inputs=(InputBinding("x", source),), outputs=outputs))


def good() -> Pipeline:
    switch = SwitchStep(
        cases=(SwitchCase(Condition(tensor="a.y", operator=Operator.GT, number=0.5), "b"),),
        default_target="c",
    )
    return Pipeline(
        name="p",
        inputs=(TensorSpec("x", "FP32"),),
        nodes=(
            model("a"),
            NodeSpec("gate", switch),
            model("b"),
            model("c"),
            NodeSpec("ens", EnsembleStep(sources=("b.y", "c.y"), combiner=Combiner.MEAN)),
            NodeSpec("split", SplitterStep(targets=(WeightedTarget("d", 1.0),))),
            model("d"),
        ),
        outputs=(PipelineOutput("out", ("ens.output", "d.y")),),
    )


def with_nodes(p: Pipeline, *nodes: NodeSpec) -> Pipeline:
    return replace(p, nodes=nodes)


def switch_case(cond: Condition) -> Callable[[Pipeline], Pipeline]:
    return lambda p: with_nodes(
        p, model("a"), NodeSpec("s", SwitchStep(cases=(SwitchCase(cond, "b"),))), model("b")
    )


def test_validate_accepts_every_node_kind() -> None:
    validate(good(), Defaults())


def test_validate_message_names_pipeline_where_and_problem() -> None:
    with pytest.raises(InvalidPipeline) as exc:
        validate(replace(good(), outputs=()), Defaults())
    assert exc.value.message == "pipeline 'p': outputs: a pipeline needs at least one output"


CASES: list[tuple[str, Callable[[Pipeline], Pipeline], str]] = [
    ("bad name", lambda p: replace(p, name="P"), "name: expected 1-63 characters"),
    ("no nodes", lambda p: replace(p, nodes=()), "nodes: a pipeline needs at least one node"),
    (
        "too many nodes",
        lambda p: with_nodes(p, *(model(f"n{i}") for i in range(257))),
        "nodes: at most 256 nodes, got 257",
    ),
    (
        "duplicate input",
        lambda p: replace(p, inputs=(TensorSpec("x", "FP32"),) * 2),
        "input names must be unique",
    ),
    (
        "input without type",
        lambda p: replace(p, inputs=(TensorSpec("x", ""),)),
        "an input needs a name and a datatype",
    ),
    ("node named inputs", lambda p: with_nodes(p, model("inputs")), "node 'inputs': invalid name"),
    ("duplicate node", lambda p: with_nodes(p, model("a"), model("a")), "node 'a': duplicate node name"),
    ("no kind", lambda p: with_nodes(p, NodeSpec("a", None)), "a node needs a kind"),
    ("negative retry", lambda p: with_nodes(p, replace(model("a"), timeout_s=-1)), "must not be negative"),
    ("model without name", lambda p: with_nodes(p, NodeSpec("a", ModelStep(model=""))), "needs a model name"),
    (
        "model inputs twice",
        lambda p: with_nodes(p, NodeSpec("a", ModelStep("m", inputs=(InputBinding("x", "inputs.x"),) * 2))),
        "model input names must be non-empty and unique",
    ),
    (
        "ensemble without combiner",
        lambda p: with_nodes(
            p, model("a"), NodeSpec("e", EnsembleStep(("a.y", "a.y"), Combiner.UNSPECIFIED))
        ),
        "an ensemble needs a combiner",
    ),
    (
        "ensemble of one",
        lambda p: with_nodes(p, model("a"), NodeSpec("e", EnsembleStep(("a.y",), Combiner.MEAN))),
        "an ensemble needs at least 2 sources, got 1",
    ),
    (
        "weights missing",
        lambda p: with_nodes(
            p, model("a"), NodeSpec("e", EnsembleStep(("a.y", "a.y"), Combiner.WEIGHTED_MEAN))
        ),
        "WEIGHTED_MEAN needs one positive weight per source",
    ),
    (
        "min_sources too high",
        lambda p: with_nodes(
            p, model("a"), NodeSpec("e", EnsembleStep(("a.y", "a.y"), Combiner.MEAN, min_sources=3))
        ),
        "min_sources must be 1..2, got 3",
    ),
    (
        "switch without cases",
        lambda p: with_nodes(p, NodeSpec("s", SwitchStep(cases=()))),
        "at least one case",
    ),
    (
        "tensor and parameter",
        switch_case(Condition(tensor="a.y", parameter="k", operator=Operator.EQ, number=1)),
        "case 0: the condition needs exactly one of tensor or parameter",
    ),
    (
        "no operator",
        switch_case(Condition(parameter="k", number=1)),
        "case 0: the condition needs an operator",
    ),
    ("no operand", switch_case(Condition(parameter="k", operator=Operator.EQ)), "needs an operand"),
    (
        "tensor with text",
        switch_case(Condition(tensor="a.y", operator=Operator.EQ, text="x")),
        "a tensor condition compares with a number",
    ),
    (
        "splitter without targets",
        lambda p: with_nodes(p, NodeSpec("s", SplitterStep(targets=()))),
        "a splitter needs at least one target",
    ),
    (
        "splitter zero weight",
        lambda p: with_nodes(p, NodeSpec("s", SplitterStep((WeightedTarget("a", 0),))), model("a")),
        "splitter weights must be > 0",
    ),
    ("bad reference", lambda p: with_nodes(p, model("a", source="x")), "reference 'x' must be"),
    ("unknown input", lambda p: with_nodes(p, model("a", source="inputs.z")), "declares no input 'z'"),
    ("unknown node", lambda p: with_nodes(p, model("a", source="b.y")), "reference 'b.y': no node 'b'"),
    (
        "tensor not produced",
        lambda p: with_nodes(p, model("a"), model("b", source="a.z")),
        "reference 'a.z': node 'a' produces ['y']",
    ),
    (
        "target not a node",
        lambda p: with_nodes(p, NodeSpec("s", SplitterStep((WeightedTarget("zz", 1),)))),
        "target 'zz' is not a node",
    ),
    (
        "target itself",
        lambda p: with_nodes(p, NodeSpec("s", SplitterStep((WeightedTarget("s", 1),)))),
        "a node cannot target itself",
    ),
    (
        "gated twice",
        lambda p: with_nodes(
            p,
            model("a"),
            NodeSpec("s1", SplitterStep((WeightedTarget("a", 1),))),
            NodeSpec("s2", SplitterStep((WeightedTarget("a", 1),))),
        ),
        "target 'a' is already a target of 's1'",
    ),
    (
        "duplicate output",
        lambda p: replace(p, outputs=(PipelineOutput("o", ("a.y",)),) * 2),
        "output names must be",
    ),
    (
        "output no source",
        lambda p: replace(p, outputs=(PipelineOutput("o", ()),)),
        "output 'o': an output needs",
    ),
    (
        "output bad ref",
        lambda p: replace(p, outputs=(PipelineOutput("o", ("a.q",)),)),
        "output 'o': reference 'a.q'",
    ),
    (
        "cycle",
        lambda p: with_nodes(p, model("a", source="b.y"), model("b", source="a.y")),
        "node 'a': dependency cycle among ['a', 'b']",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_refuses(mutate: Callable[[Pipeline], Pipeline], message: str) -> None:
    p = mutate(replace(good(), outputs=(PipelineOutput("out", ("a.y",)),)))
    with pytest.raises(InvalidPipeline) as exc:
        validate(p, Defaults())
    assert message in exc.value.message
