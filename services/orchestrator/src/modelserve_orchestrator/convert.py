"""pb <-> domain conversions (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2

from modelserve.common.v1 import tensor_pb2
from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.tensors import from_raw, to_raw
from modelserve_orchestrator import domain as d


def _secs(x: duration_pb2.Duration) -> float:
    return x.seconds + x.nanos / 1e9


def _dur(s: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(s * 1e9))
    return out


def _ts(t: float) -> timestamp_pb2.Timestamp | None:
    if not t:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(t * 1e9))
    return out


def tensors_from_pb(items: Iterable[tensor_pb2.Tensor]) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    for t in items:
        if not t.name:
            raise InvalidArgument("every input tensor needs a name")
        if t.name in out:
            raise InvalidArgument(f"input tensor {t.name!r} given twice")
        out[t.name] = from_raw(t.raw_contents, t.datatype, list(t.shape), f"tensor {t.name!r}")
    return out


def tensors_to_pb(items: Mapping[str, np.ndarray[Any, Any]]) -> list[tensor_pb2.Tensor]:
    out = []
    for name, array in items.items():
        datatype, shape, raw = to_raw(array)
        out.append(tensor_pb2.Tensor(name=name, datatype=datatype, shape=shape, raw_contents=raw))
    return out


def webhook_from_pb(w: pb.Webhook, present: bool) -> d.Webhook | None:
    if not present:
        return None
    return d.Webhook(w.url, tuple(w.secrets), tuple(d.WebhookEvent(e) for e in w.events))


def webhook_to_pb(w: d.Webhook | None) -> pb.Webhook | None:
    if w is None:
        return None
    return pb.Webhook(url=w.url, secrets=["<redacted>"] * len(w.secrets), events=[int(e) for e in w.events])  # type: ignore[misc]


def _step_from_pb(n: pb.Node) -> d.Step | None:
    kind = n.WhichOneof("kind")
    if kind == "model":
        m = n.model
        return d.ModelStep(
            m.model.name,
            m.model.version,
            tuple(d.InputBinding(b.name, b.source) for b in m.inputs),
            tuple(m.outputs),
        )
    if kind == "ensemble":
        e = n.ensemble
        return d.EnsembleStep(
            tuple(e.sources),
            d.Combiner(e.combiner),
            tuple(e.weights),
            e.axis,
            e.output or "output",
            e.min_sources or 1,
        )
    if kind == "switch":
        cases = []
        for c in n.switch.cases:
            cond = c.condition
            cases.append(
                d.SwitchCase(
                    d.Condition(
                        tensor=cond.tensor,
                        parameter=cond.parameter,
                        reduce=d.Reduce(cond.reduce),
                        operator=d.Operator(cond.operator),
                        number=cond.number if cond.WhichOneof("operand") == "number" else None,
                        text=cond.text if cond.WhichOneof("operand") == "text" else None,
                    ),
                    c.target,
                )
            )
        return d.SwitchStep(tuple(cases), n.switch.default_target)
    if kind == "splitter":
        s = n.splitter
        return d.SplitterStep(
            tuple(d.WeightedTarget(t.target, t.weight) for t in s.targets), s.sticky_parameter
        )
    return None


def pipeline_from_pb(p: pb.Pipeline) -> d.Pipeline:
    return d.Pipeline(
        name=p.name,
        description=p.description,
        inputs=tuple(d.TensorSpec(i.name, i.datatype, tuple(i.shape)) for i in p.inputs),
        nodes=tuple(
            d.NodeSpec(
                name=n.name,
                step=_step_from_pb(n),
                timeout_s=_secs(n.timeout),
                max_attempts=n.retry.max_attempts,
                initial_backoff_s=_secs(n.retry.initial_backoff),
                max_backoff_s=_secs(n.retry.max_backoff),
                soft=n.dependency == pb.DEPENDENCY_SOFT,
            )
            for n in p.nodes
        ),
        outputs=tuple(d.PipelineOutput(o.name, tuple(o.sources)) for o in p.outputs),
        webhook=webhook_from_pb(p.webhook, p.HasField("webhook")),
    )


def _node_to_pb(n: d.NodeSpec) -> pb.Node:
    out = pb.Node(
        name=n.name,
        timeout=_dur(n.timeout_s),
        retry=pb.RetryPolicy(
            max_attempts=n.max_attempts,
            initial_backoff=_dur(n.initial_backoff_s),
            max_backoff=_dur(n.max_backoff_s),
        ),
        dependency=pb.DEPENDENCY_SOFT if n.soft else pb.DEPENDENCY_HARD,
    )
    s = n.step
    if isinstance(s, d.ModelStep):
        out.model.model.name = s.model
        out.model.model.version = s.version
        out.model.inputs.extend(pb.InputBinding(name=b.name, source=b.source) for b in s.inputs)
        out.model.outputs.extend(s.outputs)
    elif isinstance(s, d.EnsembleStep):
        out.ensemble.CopyFrom(
            pb.EnsembleNode(
                sources=s.sources,
                combiner=int(s.combiner),  # type: ignore[arg-type]
                weights=s.weights,
                axis=s.axis,
                output=s.output,
                min_sources=s.min_sources,
            )
        )
    elif isinstance(s, d.SwitchStep):
        for c in s.cases:
            cond = pb.Condition(reduce=int(c.condition.reduce), operator=int(c.condition.operator))  # type: ignore[arg-type]
            if c.condition.tensor:
                cond.tensor = c.condition.tensor
            else:
                cond.parameter = c.condition.parameter
            if c.condition.number is not None:
                cond.number = c.condition.number
            elif c.condition.text is not None:
                cond.text = c.condition.text
            out.switch.cases.add(condition=cond, target=c.target)
        out.switch.default_target = s.default_target
    elif isinstance(s, d.SplitterStep):
        out.splitter.targets.extend(pb.WeightedTarget(target=t.target, weight=t.weight) for t in s.targets)
        out.splitter.sticky_parameter = s.sticky_parameter
    return out


def pipeline_to_pb(p: d.Pipeline) -> pb.Pipeline:
    from modelserve.common.v1 import tensor_pb2 as common

    return pb.Pipeline(
        name=p.name,
        version=p.version,
        description=p.description,
        inputs=[common.TensorSpec(name=i.name, datatype=i.datatype, shape=i.shape) for i in p.inputs],
        nodes=[_node_to_pb(n) for n in p.nodes],
        outputs=[pb.PipelineOutput(name=o.name, sources=o.sources) for o in p.outputs],
        webhook=webhook_to_pb(p.webhook),
        create_time=_ts(p.create_time),
    )


def trace_to_pb(t: d.NodeTrace) -> pb.NodeTrace:
    return pb.NodeTrace(
        node=t.node,
        status=int(t.status),  # type: ignore[arg-type]
        latency=_dur(t.latency_s),
        attempts=t.attempts,
        model_name=t.model_name,
        model_version=t.model_version,
        chosen_target=t.chosen_target,
        message=t.message,
        error_code=t.error_code,
    )


def run_request(
    msg: pb.RunPipelineRequest | pb.StreamPipelineRunRequest | pb.CreateExecutionRequest,
) -> d.RunRequest:
    if not msg.pipeline:
        raise InvalidArgument("pipeline is required")
    return d.RunRequest(msg.pipeline, msg.version, tensors_from_pb(msg.inputs), dict(msg.parameters))


def run_result_to_pb(r: d.RunResult) -> pb.RunPipelineResponse:
    return pb.RunPipelineResponse(
        outputs=tensors_to_pb(r.outputs),
        trace=[trace_to_pb(t) for t in r.trace],
        missing_outputs=r.missing_outputs,
        pipeline_version=r.pipeline_version,
    )


def stream_item_to_pb(item: d.NodeResult | d.RunResult) -> pb.StreamPipelineRunResponse:
    if isinstance(item, d.RunResult):
        return pb.StreamPipelineRunResponse(result=run_result_to_pb(item))
    return pb.StreamPipelineRunResponse(
        node_result=pb.NodeResult(trace=trace_to_pb(item.trace), outputs=tensors_to_pb(item.outputs))
    )


def execution_to_pb(e: d.Execution) -> pb.Execution:
    return pb.Execution(
        execution=e.id,
        pipeline=e.pipeline,
        pipeline_version=e.pipeline_version,
        state=int(e.state),  # type: ignore[arg-type]
        outputs=tensors_to_pb(e.outputs),
        trace=[trace_to_pb(t) for t in e.trace],
        missing_outputs=e.missing_outputs,
        error=e.error,
        idempotency_key=e.idempotency_key,
        attempts=e.attempts,
        parameters=e.parameters,
        webhook=webhook_to_pb(e.webhook),
        create_time=_ts(e.create_time),
        start_time=_ts(e.start_time),
        end_time=_ts(e.end_time),
    )


def event_to_pb(e: d.ExecutionEvent) -> pb.WatchExecutionResponse:
    return pb.WatchExecutionResponse(
        type=int(e.type),  # type: ignore[arg-type]
        state=int(e.state),  # type: ignore[arg-type]
        node=trace_to_pb(e.node) if e.node else None,
        execution=execution_to_pb(e.execution) if e.execution else None,
        time=_ts(e.time),
    )


def delivery_to_pb(w: d.WebhookDelivery) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        webhook_id=w.webhook_id,
        url=w.url,
        event=int(w.event),  # type: ignore[arg-type]
        state=int(w.state),  # type: ignore[arg-type]
        attempts=[
            pb.WebhookAttempt(
                attempt=a.attempt,
                time=_ts(a.time),
                http_status=a.http_status,
                error=a.error,
                latency=_dur(a.latency_s),
            )
            for a in w.attempts
        ],
    )
