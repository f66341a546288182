import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from modelserve.common.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dependency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPENDENCY_UNSPECIFIED: _ClassVar[Dependency]
    DEPENDENCY_HARD: _ClassVar[Dependency]
    DEPENDENCY_SOFT: _ClassVar[Dependency]

class Combiner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMBINER_UNSPECIFIED: _ClassVar[Combiner]
    COMBINER_MEAN: _ClassVar[Combiner]
    COMBINER_WEIGHTED_MEAN: _ClassVar[Combiner]
    COMBINER_MAJORITY_VOTE: _ClassVar[Combiner]
    COMBINER_CONCAT: _ClassVar[Combiner]

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQ: _ClassVar[Operator]
    OPERATOR_NE: _ClassVar[Operator]
    OPERATOR_LT: _ClassVar[Operator]
    OPERATOR_LE: _ClassVar[Operator]
    OPERATOR_GT: _ClassVar[Operator]
    OPERATOR_GE: _ClassVar[Operator]

class Reduce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDUCE_UNSPECIFIED: _ClassVar[Reduce]
    REDUCE_MAX: _ClassVar[Reduce]
    REDUCE_MIN: _ClassVar[Reduce]
    REDUCE_MEAN: _ClassVar[Reduce]
    REDUCE_FIRST: _ClassVar[Reduce]

class WebhookEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_EVENT_UNSPECIFIED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_SUCCEEDED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_FAILED: _ClassVar[WebhookEvent]
    WEBHOOK_EVENT_CANCELLED: _ClassVar[WebhookEvent]

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    NODE_STATUS_SUCCEEDED: _ClassVar[NodeStatus]
    NODE_STATUS_FAILED: _ClassVar[NodeStatus]
    NODE_STATUS_SKIPPED: _ClassVar[NodeStatus]
    NODE_STATUS_CANCELLED: _ClassVar[NodeStatus]

class ExecutionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATE_UNSPECIFIED: _ClassVar[ExecutionState]
    EXECUTION_STATE_QUEUED: _ClassVar[ExecutionState]
    EXECUTION_STATE_RUNNING: _ClassVar[ExecutionState]
    EXECUTION_STATE_SUCCEEDED: _ClassVar[ExecutionState]
    EXECUTION_STATE_FAILED: _ClassVar[ExecutionState]
    EXECUTION_STATE_CANCELLED: _ClassVar[ExecutionState]

class ExecutionEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_EVENT_TYPE_UNSPECIFIED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_SNAPSHOT: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_STARTED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_NODE_COMPLETED: _ClassVar[ExecutionEventType]
    EXECUTION_EVENT_TYPE_FINISHED: _ClassVar[ExecutionEventType]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]
    DELIVERY_STATE_GONE: _ClassVar[DeliveryState]
    DELIVERY_STATE_REFUSED: _ClassVar[DeliveryState]
DEPENDENCY_UNSPECIFIED: Dependency
DEPENDENCY_HARD: Dependency
DEPENDENCY_SOFT: Dependency
COMBINER_UNSPECIFIED: Combiner
COMBINER_MEAN: Combiner
COMBINER_WEIGHTED_MEAN: Combiner
COMBINER_MAJORITY_VOTE: Combiner
COMBINER_CONCAT: Combiner
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQ: Operator
OPERATOR_NE: Operator
OPERATOR_LT: Operator
OPERATOR_LE: Operator
OPERATOR_GT: Operator
OPERATOR_GE: Operator
REDUCE_UNSPECIFIED: Reduce
REDUCE_MAX: Reduce
REDUCE_MIN: Reduce
REDUCE_MEAN: Reduce
REDUCE_FIRST: Reduce
WEBHOOK_EVENT_UNSPECIFIED: WebhookEvent
WEBHOOK_EVENT_SUCCEEDED: WebhookEvent
WEBHOOK_EVENT_FAILED: WebhookEvent
WEBHOOK_EVENT_CANCELLED: WebhookEvent
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_SUCCEEDED: NodeStatus
NODE_STATUS_FAILED: NodeStatus
NODE_STATUS_SKIPPED: NodeStatus
NODE_STATUS_CANCELLED: NodeStatus
EXECUTION_STATE_UNSPECIFIED: ExecutionState
EXECUTION_STATE_QUEUED: ExecutionState
EXECUTION_STATE_RUNNING: ExecutionState
EXECUTION_STATE_SUCCEEDED: ExecutionState
EXECUTION_STATE_FAILED: ExecutionState
EXECUTION_STATE_CANCELLED: ExecutionState
EXECUTION_EVENT_TYPE_UNSPECIFIED: ExecutionEventType
EXECUTION_EVENT_TYPE_SNAPSHOT: ExecutionEventType
EXECUTION_EVENT_TYPE_STARTED: ExecutionEventType
EXECUTION_EVENT_TYPE_NODE_COMPLETED: ExecutionEventType
EXECUTION_EVENT_TYPE_FINISHED: ExecutionEventType
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState
DELIVERY_STATE_GONE: DeliveryState
DELIVERY_STATE_REFUSED: DeliveryState

class Pipeline(_message.Message):
    __slots__ = ("name", "version", "description", "inputs", "nodes", "outputs", "webhook", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    description: str
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.TensorSpec]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    outputs: _containers.RepeatedCompositeFieldContainer[PipelineOutput]
    webhook: Webhook
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., description: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.TensorSpec, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[PipelineOutput, _Mapping]]] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PipelineOutput(_message.Message):
    __slots__ = ("name", "sources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "max_backoff")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "timeout", "retry", "dependency", "model", "ensemble", "switch", "splitter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_FIELD_NUMBER: _ClassVar[int]
    SWITCH_FIELD_NUMBER: _ClassVar[int]
    SPLITTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    timeout: _duration_pb2.Duration
    retry: RetryPolicy
    dependency: Dependency
    model: ModelNode
    ensemble: EnsembleNode
    switch: SwitchNode
    splitter: SplitterNode
    def __init__(self, name: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., dependency: _Optional[_Union[Dependency, str]] = ..., model: _Optional[_Union[ModelNode, _Mapping]] = ..., ensemble: _Optional[_Union[EnsembleNode, _Mapping]] = ..., switch: _Optional[_Union[SwitchNode, _Mapping]] = ..., splitter: _Optional[_Union[SplitterNode, _Mapping]] = ...) -> None: ...

class InputBinding(_message.Message):
    __slots__ = ("name", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ModelNode(_message.Message):
    __slots__ = ("model", "inputs", "outputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    model: _tensor_pb2.ModelRef
    inputs: _containers.RepeatedCompositeFieldContainer[InputBinding]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[_tensor_pb2.ModelRef, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[InputBinding, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ...) -> None: ...

class EnsembleNode(_message.Message):
    __slots__ = ("sources", "combiner", "weights", "axis", "output", "min_sources")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    COMBINER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    AXIS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MIN_SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedScalarFieldContainer[str]
    combiner: Combiner
    weights: _containers.RepeatedScalarFieldContainer[float]
    axis: int
    output: str
    min_sources: int
    def __init__(self, sources: _Optional[_Iterable[str]] = ..., combiner: _Optional[_Union[Combiner, str]] = ..., weights: _Optional[_Iterable[float]] = ..., axis: _Optional[int] = ..., output: _Optional[str] = ..., min_sources: _Optional[int] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("tensor", "parameter", "reduce", "operator", "number", "text")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    REDUCE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    tensor: str
    parameter: str
    reduce: Reduce
    operator: Operator
    number: float
    text: str
    def __init__(self, tensor: _Optional[str] = ..., parameter: _Optional[str] = ..., reduce: _Optional[_Union[Reduce, str]] = ..., operator: _Optional[_Union[Operator, str]] = ..., number: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class SwitchCase(_message.Message):
    __slots__ = ("condition", "target")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    target: str
    def __init__(self, condition: _Optional[_Union[Condition, _Mapping]] = ..., target: _Optional[str] = ...) -> None: ...

class SwitchNode(_message.Message):
    __slots__ = ("cases", "default_target")
    CASES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TARGET_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[SwitchCase]
    default_target: str
    def __init__(self, cases: _Optional[_Iterable[_Union[SwitchCase, _Mapping]]] = ..., default_target: _Optional[str] = ...) -> None: ...

class WeightedTarget(_message.Message):
    __slots__ = ("target", "weight")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    target: str
    weight: float
    def __init__(self, target: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class SplitterNode(_message.Message):
    __slots__ = ("targets", "sticky_parameter")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    STICKY_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[WeightedTarget]
    sticky_parameter: str
    def __init__(self, targets: _Optional[_Iterable[_Union[WeightedTarget, _Mapping]]] = ..., sticky_parameter: _Optional[str] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("url", "secrets", "events")
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    secrets: _containers.RepeatedScalarFieldContainer[str]
    events: _containers.RepeatedScalarFieldContainer[WebhookEvent]
    def __init__(self, url: _Optional[str] = ..., secrets: _Optional[_Iterable[str]] = ..., events: _Optional[_Iterable[_Union[WebhookEvent, str]]] = ...) -> None: ...

class NodeTrace(_message.Message):
    __slots__ = ("node", "status", "latency", "attempts", "model_name", "model_version", "chosen_target", "message", "error_code")
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_TARGET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    status: NodeStatus
    latency: _duration_pb2.Duration
    attempts: int
    model_name: str
    model_version: str
    chosen_target: str
    message: str
    error_code: str
    def __init__(self, node: _Optional[str] = ..., status: _Optional[_Union[NodeStatus, str]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attempts: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., chosen_target: _Optional[str] = ..., message: _Optional[str] = ..., error_code: _Optional[str] = ...) -> None: ...

class RunPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "inputs", "version", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    version: int
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, pipeline: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., version: _Optional[int] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RunPipelineResponse(_message.Message):
    __slots__ = ("outputs", "trace", "missing_outputs", "pipeline_version")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MISSING_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    trace: _containers.RepeatedCompositeFieldContainer[NodeTrace]
    missing_outputs: _containers.RepeatedScalarFieldContainer[str]
    pipeline_version: int
    def __init__(self, outputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., trace: _Optional[_Iterable[_Union[NodeTrace, _Mapping]]] = ..., missing_outputs: _Optional[_Iterable[str]] = ..., pipeline_version: _Optional[int] = ...) -> None: ...

class StreamPipelineRunRequest(_message.Message):
    __slots__ = ("pipeline", "inputs", "version", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    version: int
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, pipeline: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., version: _Optional[int] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeResult(_message.Message):
    __slots__ = ("trace", "outputs")
    TRACE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    trace: NodeTrace
    outputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    def __init__(self, trace: _Optional[_Union[NodeTrace, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ...) -> None: ...

class StreamPipelineRunResponse(_message.Message):
    __slots__ = ("node_result", "result")
    NODE_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    node_result: NodeResult
    result: RunPipelineResponse
    def __init__(self, node_result: _Optional[_Union[NodeResult, _Mapping]] = ..., result: _Optional[_Union[RunPipelineResponse, _Mapping]] = ...) -> None: ...

class CreatePipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class CreatePipelineResponse(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class UpdatePipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class UpdatePipelineResponse(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class GetPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "version")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    version: int
    def __init__(self, pipeline: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetPipelineResponse(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPipelinesResponse(_message.Message):
    __slots__ = ("pipelines", "next_page_token")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    next_page_token: str
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeletePipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    def __init__(self, pipeline: _Optional[str] = ...) -> None: ...

class DeletePipelineResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Execution(_message.Message):
    __slots__ = ("execution", "pipeline", "pipeline_version", "state", "outputs", "trace", "missing_outputs", "error", "idempotency_key", "attempts", "parameters", "webhook", "create_time", "start_time", "end_time")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MISSING_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    execution: str
    pipeline: str
    pipeline_version: int
    state: ExecutionState
    outputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    trace: _containers.RepeatedCompositeFieldContainer[NodeTrace]
    missing_outputs: _containers.RepeatedScalarFieldContainer[str]
    error: str
    idempotency_key: str
    attempts: int
    parameters: _containers.ScalarMap[str, str]
    webhook: Webhook
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, execution: _Optional[str] = ..., pipeline: _Optional[str] = ..., pipeline_version: _Optional[int] = ..., state: _Optional[_Union[ExecutionState, str]] = ..., outputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., trace: _Optional[_Iterable[_Union[NodeTrace, _Mapping]]] = ..., missing_outputs: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., attempts: _Optional[int] = ..., parameters: _Optional[_Mapping[str, str]] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateExecutionRequest(_message.Message):
    __slots__ = ("pipeline", "inputs", "version", "parameters", "idempotency_key", "webhook")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    version: int
    parameters: _containers.ScalarMap[str, str]
    idempotency_key: str
    webhook: Webhook
    def __init__(self, pipeline: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., version: _Optional[int] = ..., parameters: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ...) -> None: ...

class CreateExecutionResponse(_message.Message):
    __slots__ = ("execution", "replayed")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    replayed: bool
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ..., replayed: bool = ...) -> None: ...

class GetExecutionRequest(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: str
    def __init__(self, execution: _Optional[str] = ...) -> None: ...

class GetExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class ListExecutionsRequest(_message.Message):
    __slots__ = ("pipeline", "state", "page_size", "page_token")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    state: ExecutionState
    page_size: int
    page_token: str
    def __init__(self, pipeline: _Optional[str] = ..., state: _Optional[_Union[ExecutionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExecutionsResponse(_message.Message):
    __slots__ = ("executions", "next_page_token")
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[Execution]
    next_page_token: str
    def __init__(self, executions: _Optional[_Iterable[_Union[Execution, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("execution", "reason")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution: str
    reason: str
    def __init__(self, execution: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...

class WatchExecutionRequest(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: str
    def __init__(self, execution: _Optional[str] = ...) -> None: ...

class WatchExecutionResponse(_message.Message):
    __slots__ = ("type", "state", "node", "execution", "time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    type: ExecutionEventType
    state: ExecutionState
    node: NodeTrace
    execution: Execution
    time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[_Union[ExecutionEventType, str]] = ..., state: _Optional[_Union[ExecutionState, str]] = ..., node: _Optional[_Union[NodeTrace, _Mapping]] = ..., execution: _Optional[_Union[Execution, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookAttempt(_message.Message):
    __slots__ = ("attempt", "time", "http_status", "error", "latency")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    time: _timestamp_pb2.Timestamp
    http_status: int
    error: str
    latency: _duration_pb2.Duration
    def __init__(self, attempt: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("webhook_id", "url", "event", "state", "attempts")
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    url: str
    event: WebhookEvent
    state: DeliveryState
    attempts: _containers.RepeatedCompositeFieldContainer[WebhookAttempt]
    def __init__(self, webhook_id: _Optional[str] = ..., url: _Optional[str] = ..., event: _Optional[_Union[WebhookEvent, str]] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempts: _Optional[_Iterable[_Union[WebhookAttempt, _Mapping]]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: str
    def __init__(self, execution: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ...) -> None: ...
