"""Pipeline validation (at create time) and the DAG structure the runner follows: references,
dependencies, gates, node checks and the inputs of a run. No gRPC here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve_common.tensors import datatype_of
from modelserve_orchestrator.domain import (
    Combiner,
    Condition,
    EnsembleStep,
    ModelStep,
    NodeSpec,
    Operator,
    Pipeline,
    SplitterStep,
    SwitchStep,
)
from modelserve_orchestrator.errors import InvalidInputs, InvalidPipeline

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
INPUTS = "inputs"


@dataclass(frozen=True)
class Defaults:
    timeout_s: float = 30.0
    max_attempts: int = 3
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    max_nodes: int = 256


def split_ref(ref: str) -> tuple[str, str]:
    node, dot, tensor = ref.partition(".")
    return node, tensor if dot else ""


def _refs(node: NodeSpec) -> list[str]:
    step = node.step
    if isinstance(step, ModelStep):
        return [b.source for b in step.inputs]
    if isinstance(step, EnsembleStep):
        return list(step.sources)
    if isinstance(step, SwitchStep):
        return [c.condition.tensor for c in step.cases if c.condition.tensor]
    return []


def _targets(node: NodeSpec) -> list[str]:
    step = node.step
    if isinstance(step, SwitchStep):
        names = [c.target for c in step.cases] + ([step.default_target] if step.default_target else [])
        return list(dict.fromkeys(names))
    if isinstance(step, SplitterStep):
        return list(dict.fromkeys(t.target for t in step.targets))
    return []


def dependencies(pipeline: Pipeline) -> dict[str, set[str]]:
    """node -> the nodes it waits for."""
    deps: dict[str, set[str]] = {n.name: set() for n in pipeline.nodes}
    for n in pipeline.nodes:
        for ref in _refs(n):
            src, _ = split_ref(ref)
            if src != INPUTS:
                deps[n.name].add(src)
        for t in _targets(n):
            deps.setdefault(t, set()).add(n.name)
    return deps


def gate_of(pipeline: Pipeline) -> dict[str, str]:
    """target node -> the switch/splitter that gates it."""
    return {t: n.name for n in pipeline.nodes for t in _targets(n)}


def validate(p: Pipeline, defaults: Defaults) -> None:
    """Raises InvalidPipeline naming the node and the problem. The checks run in this order, and
    the first failure is the one reported."""
    bad = _Problem(p.name)
    _check_header(p, defaults, bad)
    nodes = _check_node_names(p, bad)
    refs = _RefChecker(p, nodes, bad)
    gated: dict[str, str] = {}
    for n in p.nodes:
        _check_node(n, bad)
        for ref in _refs(n):
            refs.check(f"node {n.name!r}", ref)
        _check_targets(n, nodes, gated, bad)
    _check_outputs(p, refs, bad)
    _check_acyclic(p, bad)


class _Problem:
    """Builds the InvalidPipeline of one pipeline: ``pipeline 'p': <where>: <problem>``."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline

    def __call__(self, where: str, problem: str) -> InvalidPipeline:
        return InvalidPipeline(f"pipeline {self._pipeline!r}: {where}: {problem}")


def _check_header(p: Pipeline, defaults: Defaults, bad: _Problem) -> None:
    """The pipeline's name, node count and declared inputs."""
    if not NAME_RE.match(p.name):
        raise bad("name", f"expected 1-63 characters of [a-z0-9_-] starting with a letter, got {p.name!r}")
    if not p.nodes:
        raise bad("nodes", "a pipeline needs at least one node")
    if len(p.nodes) > defaults.max_nodes:
        raise bad("nodes", f"at most {defaults.max_nodes} nodes, got {len(p.nodes)}")
    input_names = [i.name for i in p.inputs]
    if len(set(input_names)) != len(input_names):
        raise bad("inputs", "input names must be unique")
    for spec in p.inputs:
        if not spec.name or not spec.datatype:
            raise bad(f"input {spec.name!r}", "an input needs a name and a datatype")


def _check_node_names(p: Pipeline, bad: _Problem) -> dict[str, NodeSpec]:
    """Node names are valid and unique; returns name -> node."""
    nodes: dict[str, NodeSpec] = {}
    for n in p.nodes:
        if n.name == INPUTS or not NAME_RE.match(n.name):
            raise bad(
                f"node {n.name!r}",
                "invalid name: expected 1-63 characters of [a-z0-9_-] starting with a letter, not 'inputs'",
            )
        if n.name in nodes:
            raise bad(f"node {n.name!r}", "duplicate node name")
        nodes[n.name] = n
    return nodes


def _produced(n: NodeSpec) -> set[str] | None:
    """The tensor names a node can produce (None: any)."""
    step = n.step
    if isinstance(step, ModelStep):
        return set(step.outputs) or None
    if isinstance(step, EnsembleStep):
        return {step.output or "output"}
    return set()


class _RefChecker:
    """Checks 'inputs.<name>' and '<node>.<tensor>' references against a pipeline."""

    def __init__(self, p: Pipeline, nodes: dict[str, NodeSpec], bad: _Problem) -> None:
        self._inputs = [i.name for i in p.inputs]
        self._nodes = nodes
        self._produced = {n.name: _produced(n) for n in p.nodes}
        self._bad = bad

    def check(self, where: str, ref: str) -> None:
        bad = self._bad
        src, tensor = split_ref(ref)
        if not src or not tensor:
            raise bad(where, f"reference {ref!r} must be 'inputs.<name>' or '<node>.<tensor>'")
        if src == INPUTS:
            if tensor not in self._inputs:
                raise bad(where, f"reference {ref!r}: the pipeline declares no input {tensor!r}")
            return
        if src not in self._nodes:
            raise bad(where, f"reference {ref!r}: no node {src!r}")
        can = self._produced[src]
        if can is not None and tensor not in can:
            raise bad(where, f"reference {ref!r}: node {src!r} produces {sorted(can) or 'no tensors'}")


def _check_node(n: NodeSpec, bad: _Problem) -> None:
    """A node's kind, retry settings and its step's own fields."""
    where = f"node {n.name!r}"
    step = n.step
    if step is None:
        raise bad(where, "a node needs a kind: model, ensemble, switch or splitter")
    if n.timeout_s < 0 or n.max_attempts < 0 or n.initial_backoff_s < 0 or n.max_backoff_s < 0:
        raise bad(where, "timeout, attempts and backoffs must not be negative")
    if isinstance(step, ModelStep):
        _check_model_step(where, step, bad)
    elif isinstance(step, EnsembleStep):
        _check_ensemble_step(where, step, bad)
    elif isinstance(step, SwitchStep):
        _check_switch_step(where, step, bad)
    elif isinstance(step, SplitterStep):
        _check_splitter_step(where, step, bad)


def _check_model_step(where: str, step: ModelStep, bad: _Problem) -> None:
    if not step.model:
        raise bad(where, "a model node needs a model name")
    names = [b.name for b in step.inputs]
    if len(set(names)) != len(names) or not all(names):
        raise bad(where, "model input names must be non-empty and unique")


def _check_ensemble_step(where: str, step: EnsembleStep, bad: _Problem) -> None:
    if step.combiner == Combiner.UNSPECIFIED:
        raise bad(where, "an ensemble needs a combiner (MEAN, WEIGHTED_MEAN, MAJORITY_VOTE, CONCAT)")
    if len(step.sources) < 2:
        raise bad(where, f"an ensemble needs at least 2 sources, got {len(step.sources)}")
    if step.combiner == Combiner.WEIGHTED_MEAN and (
        len(step.weights) != len(step.sources) or any(w <= 0 for w in step.weights)
    ):
        raise bad(
            where,
            f"WEIGHTED_MEAN needs one positive weight per source: {len(step.sources)} sources, "
            f"weights {list(step.weights)}",
        )
    if not 1 <= step.min_sources <= len(step.sources):
        raise bad(where, f"min_sources must be 1..{len(step.sources)}, got {step.min_sources}")


def _check_switch_step(where: str, step: SwitchStep, bad: _Problem) -> None:
    if not step.cases:
        raise bad(where, "a switch needs at least one case")
    for idx, c in enumerate(step.cases):
        _check_condition(f"case {idx}", c.condition, where, bad)


def _check_condition(case: str, cond: Condition, where: str, bad: _Problem) -> None:
    if bool(cond.tensor) == bool(cond.parameter):
        raise bad(where, f"{case}: the condition needs exactly one of tensor or parameter")
    if cond.operator == Operator.UNSPECIFIED:
        raise bad(where, f"{case}: the condition needs an operator")
    if cond.number is None and cond.text is None:
        raise bad(where, f"{case}: the condition needs an operand (number or text)")
    if cond.tensor and cond.number is None:
        raise bad(where, f"{case}: a tensor condition compares with a number")
    if cond.text is not None and cond.operator not in (Operator.EQ, Operator.NE) and cond.tensor:
        raise bad(where, f"{case}: text operands allow EQ and NE only")


def _check_splitter_step(where: str, step: SplitterStep, bad: _Problem) -> None:
    if not step.targets:
        raise bad(where, "a splitter needs at least one target")
    if any(t.weight <= 0 for t in step.targets):
        raise bad(where, "splitter weights must be > 0")


def _check_targets(n: NodeSpec, nodes: dict[str, NodeSpec], gated: dict[str, str], bad: _Problem) -> None:
    """A switch's or splitter's targets are other nodes, each gated by one node only; records
    them in ``gated`` (target -> gating node)."""
    where = f"node {n.name!r}"
    for t in _targets(n):
        if t not in nodes:
            raise bad(where, f"target {t!r} is not a node")
        if t == n.name:
            raise bad(where, "a node cannot target itself")
        if t in gated:
            raise bad(where, f"target {t!r} is already a target of {gated[t]!r}")
        gated[t] = n.name


def _check_outputs(p: Pipeline, refs: _RefChecker, bad: _Problem) -> None:
    if not p.outputs:
        raise bad("outputs", "a pipeline needs at least one output")
    out_names = [o.name for o in p.outputs]
    if len(set(out_names)) != len(out_names) or not all(out_names):
        raise bad("outputs", "output names must be non-empty and unique")
    for o in p.outputs:
        if not o.sources:
            raise bad(f"output {o.name!r}", "an output needs at least one source")
        for ref in o.sources:
            refs.check(f"output {o.name!r}", ref)


def _check_acyclic(p: Pipeline, bad: _Problem) -> None:
    """Kahn's algorithm over dependencies(); names a node on the cycle."""
    remaining = {k: set(v) for k, v in dependencies(p).items()}
    ready = [k for k, v in remaining.items() if not v]
    done: set[str] = set()
    while ready:
        k = ready.pop()
        done.add(k)
        for other, v in remaining.items():
            if k in v:
                v.discard(k)
                if not v and other not in done and other not in ready:
                    ready.append(other)
    if len(done) != len(remaining):
        stuck = sorted(set(remaining) - done)
        raise bad(f"node {stuck[0]!r}", f"dependency cycle among {stuck}")


def check_inputs(p: Pipeline, inputs: Mapping[str, np.ndarray[Any, Any]]) -> None:
    declared = {i.name: i for i in p.inputs}
    missing = sorted(set(declared) - set(inputs))
    extra = sorted(set(inputs) - set(declared))
    if missing or extra:
        raise InvalidInputs(
            f"pipeline {p.name!r} expects inputs {sorted(declared)}; missing {missing}, unexpected {extra}"
        )
    for name, array in inputs.items():
        spec = declared[name]
        got = datatype_of(array).name
        if got != spec.datatype:
            raise InvalidInputs(f"input {name!r}: expected datatype {spec.datatype}, got {got}")
        if spec.shape and (
            len(spec.shape) != array.ndim
            or any(s not in (-1, d) for s, d in zip(spec.shape, array.shape, strict=False))
        ):
            raise InvalidInputs(f"input {name!r}: expected shape {list(spec.shape)}, got {list(array.shape)}")
