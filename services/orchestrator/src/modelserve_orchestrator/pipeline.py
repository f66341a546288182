"""Pipelines as DAGs: validation at create time and execution over a ``ModelCaller`` protocol.
No gRPC here, so the DAG logic is unit-testable without a network.

References: "inputs.<name>" is a pipeline input, "<node>.<tensor>" an output of a node. A node
depends on the nodes its references name and on the switch/splitter that targets it. Nodes run as
soon as their dependencies have finished, so independent branches run in parallel."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from modelserve_common.errors import (
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from modelserve_common.identity import Caller
from modelserve_common.tensors import datatype_of
from modelserve_common.tracing import links_from
from modelserve_orchestrator.domain import (
    Combiner,
    Condition,
    EnsembleStep,
    ModelStep,
    NodeResult,
    NodeSpec,
    NodeStatus,
    NodeTrace,
    Operator,
    Pipeline,
    Reduce,
    RunResult,
    SplitterStep,
    SwitchStep,
)
from modelserve_orchestrator.errors import InvalidInputs, InvalidPipeline
from modelserve_orchestrator.metrics import observe_node

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
INPUTS = "inputs"


class ModelCaller(Protocol):
    """Calls one model on behalf of a caller (whose identity goes with the call, so the model
    server enforces ownership too) and answers whether a caller may use a model."""

    async def infer(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: tuple[str, ...],
        timeout_s: float,
        caller: Caller,
    ) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
        """The model's outputs and the version that served."""
        ...

    async def may_use(self, model: str, caller: Caller, timeout_s: float) -> bool:
        """Whether the caller's tenant may use the model (it owns it, or it is shared); False
        exactly when a direct call by that tenant would answer NOT_FOUND. Outages raise."""
        ...


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


class NodeFailed(Exception):
    """A hard node failed: the run stops with the node's error."""

    def __init__(self, node: str, error: ServiceError) -> None:
        super().__init__(f"node {node!r}: {error.message}")
        self.node = node
        self.error = error

    def as_service_error(self) -> ServiceError:
        return type(self.error)(f"node {self.node!r} failed: {self.error.message}")


class ModelRefused(NodeFailed):
    """A model node names a model the caller's tenant may not use (another tenant's, or a platform
    model that is not shared): NOT_FOUND, worded as for a missing model, so nothing leaks."""

    def __init__(self, node: str, model: str) -> None:
        super().__init__(node, NotFound(f"model {model!r} not found"))

    def as_service_error(self) -> ServiceError:
        return NotFound(f"node {self.node!r}: {self.error.message}")


async def check_models(p: Pipeline, caller: Caller, model_caller: ModelCaller, defaults: Defaults) -> None:
    """Raises ModelRefused for the first model node (in spec order; every node is a top-level
    node, ensembles, switches and splitters only reference them) whose model the caller may not
    use. Trusted callers may use every model. Each distinct model is asked once, all at once,
    bounded by the longest timeout of the nodes naming it; outages raise (fail closed)."""
    if caller.is_trusted:
        return
    first: dict[str, str] = {}  # model -> first node naming it
    timeout: dict[str, float] = {}
    for n in p.nodes:
        if isinstance(n.step, ModelStep):
            first.setdefault(n.step.model, n.name)
            t = n.timeout_s or defaults.timeout_s
            timeout[n.step.model] = max(timeout.get(n.step.model, 0.0), t)
    if not first:
        return
    models = list(first)

    async def ask(model: str) -> bool:
        try:
            async with asyncio.timeout(timeout[model]):
                return await model_caller.may_use(model, caller, timeout[model])
        except TimeoutError:
            raise DeadlineExceeded(
                f"node {first[model]!r}: checking model {model!r} took longer than {timeout[model]}s"
            ) from None

    answers = await asyncio.gather(*(ask(m) for m in models))
    for model, ok in zip(models, answers, strict=True):
        if not ok:
            raise ModelRefused(first[model], model)


def _compare(op: Operator, left: float | str, right: float | str) -> bool:
    if op == Operator.EQ:
        return left == right
    if op == Operator.NE:
        return left != right
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == Operator.LT:
        return left < right  # type: ignore[operator]
    if op == Operator.LE:
        return left <= right  # type: ignore[operator]
    if op == Operator.GT:
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def evaluate(cond: Condition, tensors: Mapping[str, np.ndarray[Any, Any]], params: Mapping[str, str]) -> bool:
    """True when the condition holds; a missing tensor or parameter makes it false."""
    if cond.tensor:
        array = tensors.get(cond.tensor)
        if array is None or array.size == 0 or cond.number is None:
            return False
        values = np.asarray(array, dtype=np.float64)
        r = cond.reduce
        value = float(
            values.min()
            if r == Reduce.MIN
            else values.mean()
            if r == Reduce.MEAN
            else values.reshape(-1)[0]
            if r == Reduce.FIRST
            else values.max()
        )
        return _compare(cond.operator, value, cond.number)
    raw = params.get(cond.parameter)
    if raw is None:
        return False
    if cond.number is not None:
        try:
            return _compare(cond.operator, float(raw), cond.number)
        except ValueError:
            return False
    return _compare(cond.operator, raw, cond.text or "")


def combine(step: EnsembleStep, present: list[tuple[int, np.ndarray[Any, Any]]]) -> np.ndarray[Any, Any]:
    """Combines the present sources (index into step.sources, array)."""
    arrays = [a for _, a in present]
    try:
        if step.combiner == Combiner.CONCAT:
            return np.concatenate(arrays, axis=step.axis)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InvalidArgument(f"ensemble sources have different shapes {sorted(shapes)}")
        stack = np.stack(arrays)
        if step.combiner == Combiner.MAJORITY_VOTE:
            flat = stack.reshape(len(arrays), -1)
            out = np.empty(flat.shape[1], dtype=stack.dtype)
            for j in range(flat.shape[1]):
                values, counts = np.unique(flat[:, j], return_counts=True)
                out[j] = values[int(np.argmax(counts))]  # np.unique sorts: ties pick the smallest
            return out.reshape(arrays[0].shape)
        out_type = np.float64 if stack.dtype == np.float64 else np.float32
        if step.combiner == Combiner.WEIGHTED_MEAN:
            w = np.array([step.weights[i] for i, _ in present], dtype=np.float64)
            w = w / w.sum()
            combined: np.ndarray[Any, Any] = np.tensordot(w, stack.astype(np.float64), axes=1).astype(
                out_type
            )
        else:
            combined = stack.astype(np.float64).mean(axis=0).astype(out_type)
        return combined
    except (ValueError, np.AxisError) as exc:
        raise InvalidArgument(f"ensemble cannot combine its sources: {exc}") from exc


OnNode = Callable[[NodeResult], Awaitable[None]]


class PipelineRunner:
    """Runs one pipeline version. ``done`` holds node results already recorded (a resumed
    execution): those nodes are not run again."""

    def __init__(self, caller: ModelCaller, defaults: Defaults, tracer: trace.Tracer | None = None) -> None:
        self._caller = caller
        self._defaults = defaults
        self._tracer = tracer  # one span per node (tracing on), parent of the node's model call

    async def traced(
        self,
        execution: str,
        pipeline: str,
        creator: Mapping[str, str],
        run: Callable[[], Awaitable[RunResult]],
    ) -> RunResult:
        """Awaits ``run()`` (tracing on: under an ``execution.run`` span that starts a new trace
        linked to the creating request's span, which ``creator`` names). A callable, so that a
        task cancelled before it starts leaves no coroutine behind that was never awaited."""
        if self._tracer is None:
            return await run()
        with self._tracer.start_as_current_span(
            "execution.run",
            context=Context(),  # a root: the creating request has long been answered
            links=links_from(creator),
            attributes={"execution.id": execution, "pipeline": pipeline},
        ):
            return await run()

    async def check_models(self, p: Pipeline, caller: Caller) -> None:
        """ModelRefused when the caller may not use a model the pipeline names."""
        await check_models(p, caller, self._caller, self._defaults)

    async def run(
        self,
        p: Pipeline,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        params: Mapping[str, str],
        *,
        on_node: OnNode | None = None,
        done: Mapping[str, NodeResult] | None = None,
        sticky_salt: str = "",
        caller: Caller,
    ) -> RunResult:
        """Runs the pipeline as ``caller``: first checks that its tenant may use every model the
        pipeline names (ModelRefused otherwise: nothing runs), then sends each model call with its
        identity."""
        await check_models(p, caller, self._caller, self._defaults)
        deps = dependencies(p)
        gates = gate_of(p)
        specs = {n.name: n for n in p.nodes}
        tensors: dict[str, np.ndarray[Any, Any]] = {f"{INPUTS}.{k}": v for k, v in inputs.items()}
        results: dict[str, NodeResult] = {}
        chosen: dict[str, str] = {}
        order: list[NodeTrace] = []

        def record(result: NodeResult) -> None:
            results[result.trace.node] = result
            tensors.update(result.outputs)
            if result.trace.chosen_target:
                chosen[result.trace.node] = result.trace.chosen_target
            order.append(result.trace)

        async def settle(result: NodeResult) -> None:
            record(result)
            if on_node:
                await on_node(result)

        for r in [r for r in (done or {}).values() if r.trace.node in specs]:
            record(r)
        running: dict[asyncio.Task[NodeResult], str] = {}
        try:
            while len(results) < len(specs):
                for name in specs:
                    if name in results or name in running.values():
                        continue
                    if all(d in results for d in deps[name]):
                        skip = self._skip_reason(specs[name], deps[name], gates, chosen, results, tensors)
                        if skip is not None:
                            result = NodeResult(NodeTrace(name, NodeStatus.SKIPPED, message=skip))
                            await settle(result)
                            continue
                        task = asyncio.create_task(
                            self._run_node(specs[name], tensors, params, sticky_salt, caller)
                        )
                        running[task] = name
                if len(results) == len(specs):
                    break
                if not running:  # cannot happen for a validated pipeline
                    raise InvalidArgument(f"pipeline {p.name!r}: nodes cannot be scheduled")
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    name = running.pop(task)
                    result = task.result()
                    observe_node(p.name, result.trace)
                    if result.trace.status == NodeStatus.FAILED and not specs[name].soft:
                        raise NodeFailed(name, _error_of(result.trace))
                    await settle(result)
        finally:
            await _cancel_all(running)
        outputs, missing = _collect_outputs(p, tensors)
        return RunResult(outputs, tuple(order), tuple(missing), p.version)

    @staticmethod
    def _skip_reason(
        node: NodeSpec,
        deps: set[str],
        gates: Mapping[str, str],
        chosen: Mapping[str, str],
        results: Mapping[str, NodeResult],
        tensors: Mapping[str, np.ndarray[Any, Any]],
    ) -> str | None:
        gate = gates.get(node.name)
        if gate is not None:
            if results[gate].trace.status != NodeStatus.SUCCEEDED:
                return f"gate {gate!r} did not run"
            if chosen.get(gate) != node.name:
                return f"not chosen by {gate!r}"
        step = node.step
        if isinstance(step, ModelStep):
            for b in step.inputs:
                if b.source not in tensors:
                    return f"input {b.source!r} was not produced"
        if isinstance(step, EnsembleStep):
            present = [s for s in step.sources if s in tensors]
            if not present and all(
                results[split_ref(s)[0]].trace.status == NodeStatus.SKIPPED
                for s in step.sources
                if split_ref(s)[0] in results
            ):
                return "no source was produced"
        return None

    async def _run_node(
        self,
        node: NodeSpec,
        tensors: Mapping[str, np.ndarray[Any, Any]],
        params: Mapping[str, str],
        salt: str,
        caller: Caller,
    ) -> NodeResult:
        if self._tracer is None:
            return await self._node(node, tensors, params, salt, caller)
        with self._tracer.start_as_current_span(
            f"pipeline.node {node.name}",
            attributes={"pipeline.node": node.name, "pipeline.step": type(node.step).__name__},
        ) as span:
            result = await self._node(node, tensors, params, salt, caller)
            span.set_attribute("pipeline.node.status", result.trace.status.name)
            if result.trace.status == NodeStatus.FAILED:
                span.set_status(trace.StatusCode.ERROR, result.trace.message[:200])
            return result

    async def _node(
        self,
        node: NodeSpec,
        tensors: Mapping[str, np.ndarray[Any, Any]],
        params: Mapping[str, str],
        salt: str,
        caller: Caller,
    ) -> NodeResult:
        start = time.perf_counter()
        step = node.step
        try:
            if isinstance(step, ModelStep):
                return await self._run_model(node, step, tensors, start, caller)
            if isinstance(step, EnsembleStep):
                present = [(i, tensors[s]) for i, s in enumerate(step.sources) if s in tensors]
                if len(present) < step.min_sources:
                    raise Unavailable(
                        f"ensemble needs {step.min_sources} sources, {len(present)} were produced"
                    )
                out = combine(step, present)
                missing = [s for s in step.sources if s not in tensors]
                note = f"sources missing: {missing}" if missing else ""
                return NodeResult(
                    NodeTrace(node.name, NodeStatus.SUCCEEDED, time.perf_counter() - start, message=note),
                    {f"{node.name}.{step.output or 'output'}": out},
                )
            if isinstance(step, SwitchStep):
                target = next(
                    (c.target for c in step.cases if evaluate(c.condition, tensors, params)),
                    step.default_target,
                )
                return NodeResult(
                    NodeTrace(
                        node.name, NodeStatus.SUCCEEDED, time.perf_counter() - start, chosen_target=target
                    )
                )
            assert isinstance(step, SplitterStep)
            total = sum(t.weight for t in step.targets)
            key = params.get(step.sticky_parameter) if step.sticky_parameter else None
            if key is not None:
                digest = hashlib.sha256(f"{salt}{node.name}:{key}".encode()).digest()
                point = int.from_bytes(digest[:8], "big") / 2**64 * total
            else:
                point = random.random() * total
            acc = 0.0
            target = step.targets[-1].target
            for t in step.targets:
                acc += t.weight
                if point < acc:
                    target = t.target
                    break
            return NodeResult(
                NodeTrace(node.name, NodeStatus.SUCCEEDED, time.perf_counter() - start, chosen_target=target)
            )
        except ServiceError as exc:
            return NodeResult(
                NodeTrace(
                    node.name,
                    NodeStatus.FAILED,
                    time.perf_counter() - start,
                    message=exc.message,
                    error_code=exc.code.name,
                )
            )

    async def _run_model(
        self,
        node: NodeSpec,
        step: ModelStep,
        tensors: Mapping[str, np.ndarray[Any, Any]],
        start: float,
        caller: Caller,
    ) -> NodeResult:
        d = self._defaults
        attempts_max = node.max_attempts or d.max_attempts
        timeout = node.timeout_s or d.timeout_s
        backoff = node.initial_backoff_s or d.initial_backoff_s
        max_backoff = node.max_backoff_s or d.max_backoff_s
        inputs = {b.name: tensors[b.source] for b in step.inputs}
        attempt = 0
        while True:
            attempt += 1
            try:
                try:
                    async with asyncio.timeout(timeout):
                        outs, served = await self._caller.infer(
                            step.model, step.version, inputs, step.outputs, timeout, caller
                        )
                except TimeoutError:
                    raise DeadlineExceeded(f"model {step.model!r} took longer than {timeout}s") from None
                missing = [o for o in step.outputs if o not in outs]
                if missing:
                    raise InvalidArgument(f"model {step.model!r} did not return outputs {missing}")
                return NodeResult(
                    NodeTrace(
                        node.name,
                        NodeStatus.SUCCEEDED,
                        time.perf_counter() - start,
                        attempt,
                        step.model,
                        served,
                    ),
                    {f"{node.name}.{k}": v for k, v in outs.items()},
                )
            except ServiceError as exc:
                if not isinstance(exc, Unavailable) or attempt >= attempts_max:
                    return NodeResult(
                        NodeTrace(
                            node.name,
                            NodeStatus.FAILED,
                            time.perf_counter() - start,
                            attempt,
                            step.model,
                            message=exc.message,
                            error_code=exc.code.name,
                        )
                    )
                delay = min(max_backoff, backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))


async def _cancel_all(running: Mapping[asyncio.Task[NodeResult], str]) -> None:
    """Cancels the node tasks still running and waits for them to end."""
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)


def _collect_outputs(
    p: Pipeline, tensors: Mapping[str, np.ndarray[Any, Any]]
) -> tuple[dict[str, np.ndarray[Any, Any]], list[str]]:
    """Each pipeline output from its first source that was produced; the names of the outputs
    none of whose sources was."""
    outputs: dict[str, np.ndarray[Any, Any]] = {}
    missing: list[str] = []
    for o in p.outputs:
        found = next((tensors[s] for s in o.sources if s in tensors), None)
        if found is None:
            missing.append(o.name)
        else:
            outputs[o.name] = found
    return outputs, missing


def _error_of(trace: NodeTrace) -> ServiceError:
    from modelserve_common import errors

    for cls in errors.all_error_classes():
        if cls.code.name == trace.error_code:
            return cls(trace.message)
    if trace.error_code == "CANCELLED":
        return Cancelled(trace.message)
    return errors.Internal(trace.message or "node failed")
