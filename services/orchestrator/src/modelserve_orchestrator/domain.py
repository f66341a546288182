"""The orchestrator's domain: pipeline specs, runs, executions and webhook deliveries (frozen
dataclasses, no protobuf). Specs round-trip through plain dicts for the database."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelserve_common.identity import INFER, PLATFORM_OWNER, TRUSTED, Caller

EXECUTION_SCOPES = frozenset({INFER})
"""The scopes an execution's model calls carry (the execution keeps its tenant, not its creator's
scopes; running it needs ``infer``)."""


class Combiner(enum.IntEnum):
    UNSPECIFIED = 0
    MEAN = 1
    WEIGHTED_MEAN = 2
    MAJORITY_VOTE = 3
    CONCAT = 4


class Operator(enum.IntEnum):
    UNSPECIFIED = 0
    EQ = 1
    NE = 2
    LT = 3
    LE = 4
    GT = 5
    GE = 6


class Reduce(enum.IntEnum):
    UNSPECIFIED = 0
    MAX = 1
    MIN = 2
    MEAN = 3
    FIRST = 4


class NodeStatus(enum.IntEnum):
    UNSPECIFIED = 0
    SUCCEEDED = 1
    FAILED = 2
    SKIPPED = 3
    CANCELLED = 4


class ExecutionState(enum.IntEnum):
    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5

    @property
    def terminal(self) -> bool:
        return self in (ExecutionState.SUCCEEDED, ExecutionState.FAILED, ExecutionState.CANCELLED)


class WebhookEvent(enum.IntEnum):
    UNSPECIFIED = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3


class DeliveryState(enum.IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    DELIVERED = 2
    FAILED = 3
    GONE = 4
    REFUSED = 5


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class InputBinding:
    name: str
    source: str


@dataclass(frozen=True)
class ModelStep:
    model: str
    version: str = ""
    inputs: tuple[InputBinding, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnsembleStep:
    sources: tuple[str, ...]
    combiner: Combiner
    weights: tuple[float, ...] = ()
    axis: int = 0
    output: str = "output"
    min_sources: int = 1


@dataclass(frozen=True)
class Condition:
    tensor: str = ""
    parameter: str = ""
    reduce: Reduce = Reduce.UNSPECIFIED
    operator: Operator = Operator.UNSPECIFIED
    number: float | None = None
    text: str | None = None


@dataclass(frozen=True)
class SwitchCase:
    condition: Condition
    target: str


@dataclass(frozen=True)
class SwitchStep:
    cases: tuple[SwitchCase, ...]
    default_target: str = ""


@dataclass(frozen=True)
class WeightedTarget:
    target: str
    weight: float


@dataclass(frozen=True)
class SplitterStep:
    targets: tuple[WeightedTarget, ...]
    sticky_parameter: str = ""


Step = ModelStep | EnsembleStep | SwitchStep | SplitterStep


@dataclass(frozen=True)
class NodeSpec:
    name: str
    step: Step | None
    timeout_s: float = 0.0
    max_attempts: int = 0
    initial_backoff_s: float = 0.0
    max_backoff_s: float = 0.0
    soft: bool = False


@dataclass(frozen=True)
class PipelineOutput:
    name: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Webhook:
    url: str
    secrets: tuple[str, ...] = ()
    events: tuple[WebhookEvent, ...] = ()

    def wants(self, event: WebhookEvent) -> bool:
        return not self.events or event in self.events


@dataclass(frozen=True)
class Pipeline:
    name: str
    version: int = 0
    description: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    nodes: tuple[NodeSpec, ...] = ()
    outputs: tuple[PipelineOutput, ...] = ()
    webhook: Webhook | None = None
    create_time: float = 0.0

    def spec_dict(self) -> dict[str, Any]:
        """The spec as plain data (version and create_time excluded), with step kinds tagged."""
        data = asdict(self)
        data.pop("version")
        data.pop("create_time")
        for node, raw in zip(self.nodes, data["nodes"], strict=True):
            raw["kind"] = type(node.step).__name__ if node.step is not None else ""
        return data


_STEP_TYPES: dict[str, type[Any]] = {
    "ModelStep": ModelStep,
    "EnsembleStep": EnsembleStep,
    "SwitchStep": SwitchStep,
    "SplitterStep": SplitterStep,
}


def _step_from(kind: str, d: dict[str, Any] | None) -> Step | None:
    if not kind or d is None:
        return None
    if kind == "ModelStep":
        return ModelStep(
            d["model"], d["version"], tuple(InputBinding(**b) for b in d["inputs"]), tuple(d["outputs"])
        )
    if kind == "EnsembleStep":
        return EnsembleStep(
            tuple(d["sources"]),
            Combiner(d["combiner"]),
            tuple(d["weights"]),
            d["axis"],
            d["output"],
            d["min_sources"],
        )
    if kind == "SwitchStep":
        cases = tuple(
            SwitchCase(
                Condition(
                    **{
                        **c["condition"],
                        "reduce": Reduce(c["condition"]["reduce"]),
                        "operator": Operator(c["condition"]["operator"]),
                    }
                ),
                c["target"],
            )
            for c in d["cases"]
        )
        return SwitchStep(cases, d["default_target"])
    return SplitterStep(tuple(WeightedTarget(**t) for t in d["targets"]), d["sticky_parameter"])


def webhook_from_dict(d: dict[str, Any] | None) -> Webhook | None:
    if not d:
        return None
    return Webhook(d["url"], tuple(d["secrets"]), tuple(WebhookEvent(e) for e in d["events"]))


def pipeline_from_dict(d: dict[str, Any], version: int, create_time: float) -> Pipeline:
    return Pipeline(
        name=d["name"],
        version=version,
        description=d["description"],
        inputs=tuple(TensorSpec(i["name"], i["datatype"], tuple(i["shape"])) for i in d["inputs"]),
        nodes=tuple(
            NodeSpec(
                name=n["name"],
                step=_step_from(n["kind"], n["step"]),
                timeout_s=n["timeout_s"],
                max_attempts=n["max_attempts"],
                initial_backoff_s=n["initial_backoff_s"],
                max_backoff_s=n["max_backoff_s"],
                soft=n["soft"],
            )
            for n in d["nodes"]
        ),
        outputs=tuple(PipelineOutput(o["name"], tuple(o["sources"])) for o in d["outputs"]),
        webhook=webhook_from_dict(d["webhook"]),
        create_time=create_time,
    )


@dataclass(frozen=True)
class NodeTrace:
    node: str
    status: NodeStatus
    latency_s: float = 0.0
    attempts: int = 0
    model_name: str = ""
    model_version: str = ""
    chosen_target: str = ""
    message: str = ""
    error_code: str = ""


@dataclass(frozen=True)
class NodeResult:
    """One node's completion: its trace and the tensors it produced ("<node>.<tensor>")."""

    trace: NodeTrace
    outputs: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    outputs: dict[str, np.ndarray[Any, Any]]
    trace: tuple[NodeTrace, ...]
    missing_outputs: tuple[str, ...]
    pipeline_version: int


@dataclass(frozen=True)
class RunRequest:
    pipeline: str
    version: int
    inputs: dict[str, np.ndarray[Any, Any]]
    parameters: dict[str, str]


@dataclass(frozen=True)
class Execution:
    id: str
    pipeline: str
    pipeline_version: int
    state: ExecutionState
    parameters: dict[str, str]
    idempotency_key: str = ""
    webhook: Webhook | None = None
    outputs: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    trace: tuple[NodeTrace, ...] = ()
    missing_outputs: tuple[str, ...] = ()
    error: str = ""
    attempts: int = 0
    create_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    tenant: str = PLATFORM_OWNER
    """The owner: a tenant, or PLATFORM_OWNER when a trusted caller created it."""


@dataclass(frozen=True)
class WebhookAttempt:
    attempt: int
    time: float
    http_status: int
    error: str
    latency_s: float


@dataclass(frozen=True)
class WebhookDelivery:
    webhook_id: str
    url: str
    event: WebhookEvent
    state: DeliveryState
    attempts: tuple[WebhookAttempt, ...] = ()


class EventType(enum.IntEnum):
    UNSPECIFIED = 0
    SNAPSHOT = 1
    STARTED = 2
    NODE_COMPLETED = 3
    FINISHED = 4


@dataclass(frozen=True)
class ExecutionEvent:
    type: EventType
    state: ExecutionState
    time: float
    node: NodeTrace | None = None
    execution: Execution | None = None


def trace_to_dict(t: NodeTrace) -> dict[str, Any]:
    return asdict(t)


def trace_from_dict(d: dict[str, Any]) -> NodeTrace:
    return NodeTrace(**{**d, "status": NodeStatus(d["status"])})


def execution_caller(owner: str) -> Caller:
    """The caller an execution runs as: its stored owner (a tenant, with EXECUTION_SCOPES), or a
    trusted caller for PLATFORM_OWNER."""
    return TRUSTED if owner == PLATFORM_OWNER else Caller(owner, EXECUTION_SCOPES)
