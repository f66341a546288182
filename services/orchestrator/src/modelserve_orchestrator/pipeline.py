"""Pipelines as DAGs: validation at create time and execution over a ``ModelCaller`` protocol.
No gRPC here, so the DAG logic is unit-testable without a network.

References: "inputs.<name>" is a pipeline input, "<node>.<tensor>" an output of a node. A node
depends on the nodes its references name and on the switch/splitter that targets it. Nodes run as
soon as their dependencies have finished, so independent branches run in parallel.

Modules: pipeline_checks.py (validation, dependencies, gates), pipeline_steps.py (switch,
ensemble and splitter computations, outputs), this one (the model-caller protocol, the ownership
check and the runner)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from modelserve_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from modelserve_common.identity import Caller
from modelserve_common.tracing import links_from
from modelserve_orchestrator.domain import (
    EnsembleStep,
    ModelStep,
    NodeResult,
    NodeSpec,
    NodeStatus,
    NodeTrace,
    Pipeline,
    RunResult,
    SplitterStep,
    SwitchStep,
)
from modelserve_orchestrator.metrics import observe_node
from modelserve_orchestrator.pipeline_checks import INPUTS, Defaults, dependencies, gate_of, split_ref
from modelserve_orchestrator.pipeline_steps import (
    cancel_all,
    choose_target,
    collect_outputs,
    combine,
    error_of,
    evaluate,
)


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
                        raise NodeFailed(name, error_of(result.trace))
                    await settle(result)
        finally:
            await cancel_all(running)
        outputs, missing = collect_outputs(p, tensors)
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
            target = choose_target(step, node.name, params, salt)
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
