"""Domain objects of the registry (no protobuf here). Times are microseconds since the epoch.
The etag of a resource is the revision of its last change."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

BACKENDS = ("onnx", "python", "triton")
CODE_BACKENDS = frozenset({"python"})
"""Backends that run user-supplied code: registering or deploying a version with one needs the
owning tenant's code_execution_allowed permission. The one place this set is defined."""
STATUSES = ("PENDING", "READY", "FAILED")
# Allowed status transitions (same status is always allowed).
TRANSITIONS = {
    "PENDING": {"READY", "FAILED"},
    "READY": {"FAILED"},
    "FAILED": {"PENDING", "READY"},
}

ChangeType = Literal["CREATED", "UPDATED", "DELETED"]


@dataclass
class TensorSpec:
    name: str
    datatype: str
    shape: list[int] = field(default_factory=list)


@dataclass
class Batching:
    max_batch_size: int = 0
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 0
    max_queue_size: int = 0


@dataclass
class RateLimit:
    requests_per_second: float = 0.0
    burst: int = 0


@dataclass
class PredictionLogging:
    """A deployment's prediction-logging policy (followed by the model server)."""

    sample_ratio: float = 0.0
    log_request: bool = False
    log_response: bool = False
    max_record_bytes: int = 0


@dataclass
class Model:
    name: str
    tenant: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    latest_version: int = 0
    shared: bool = False
    revision: int = 0
    create_time: int = 0
    update_time: int = 0


@dataclass
class ModelVersion:
    model: str
    version: int
    artifact_uri: str
    artifact_sha256: str
    backend: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    batching: Batching = field(default_factory=Batching)
    metadata: dict[str, str] = field(default_factory=dict)
    source_run: str = ""
    source_uri: str = ""
    artifact_size_bytes: int = 0
    artifact_format: str = ""
    status: str = "PENDING"
    status_message: str = ""
    aliases: list[str] = field(default_factory=list)
    revision: int = 0
    create_time: int = 0
    update_time: int = 0


@dataclass
class Alias:
    model: str
    alias: str
    version: int
    revision: int = 0
    update_time: int = 0


@dataclass
class Target:
    version: int
    weight: int = 0
    mirror: bool = False
    requested: str = ""


@dataclass
class Deployment:
    model: str
    tenant: str
    targets: list[Target] = field(default_factory=list)
    batching_overrides: Batching = field(default_factory=Batching)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    revision: int = 0
    update_time: int = 0
    shared: bool = False
    prediction_logging: PredictionLogging = field(default_factory=PredictionLogging)


@dataclass
class Tenant:
    name: str
    display_name: str = ""
    rate_limit: RateLimit = field(default_factory=RateLimit)
    max_models: int = 0
    code_execution_allowed: bool = False
    storage_quota_bytes: int = 0
    storage_used_bytes: int = 0  # output only: computed from the tenant's versions' blobs
    revision: int = 0
    create_time: int = 0


@dataclass
class ApiKey:
    key: str
    tenant: str
    display_name: str = ""
    scopes: list[str] = field(default_factory=list)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    expire_time: int | None = None
    create_time: int = 0
    rotate_time: int | None = None
    previous_expire_time: int | None = None
    revoke_time: int | None = None
    revision: int = 0


@dataclass
class KeySecrets:
    """The stored hashes of a key ("salt$sha256hex"), never returned to callers."""

    secret_hash: str
    previous_hash: str | None
    previous_expire_time: int | None


Resource = Model | ModelVersion | Alias | Deployment | Tenant | ApiKey
KINDS: dict[str, type[Any]] = {
    "model": Model,
    "model_version": ModelVersion,
    "alias": Alias,
    "deployment": Deployment,
    "tenant": Tenant,
    "api_key": ApiKey,
}


def kind_of(resource: Resource) -> str:
    for name, cls in KINDS.items():
        if isinstance(resource, cls):
            return name
    raise TypeError(type(resource))


@dataclass
class Change:
    """One committed change, as Watch sends it."""

    revision: int
    type: ChangeType
    commit_time: int
    tenant: str
    resource: Resource | None


def to_plain(obj: Any) -> Any:
    """A dataclass tree as JSON-ready dicts and lists."""
    return dataclasses.asdict(obj)


def from_plain(cls: type[Any], data: Any) -> Any:
    """Builds ``cls`` (a dataclass) from ``to_plain`` output, recursively."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name])
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value) if len(args) == 1 else value
    if origin is list:
        (arg,) = typing.get_args(tp)
        return [_coerce(arg, v) for v in value]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_plain(tp, value)
    return value
