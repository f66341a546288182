"""Model configuration: Triton's ``config.pbtxt`` (the subset in model_config.proto; fields we do not
support are ignored) read into a validated, immutable :class:`ModelSpec`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.errors import clip
from modelserve_common.tensors import BY_CONFIG_NAME, DataType
from modelserve_model_server.errors import InvalidModelConfig

CONFIG_FILE = "config.pbtxt"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")

# platform -> backend, for configs that name a platform only
_PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "python": "python"}
_BACKEND_PLATFORM = {"onnxruntime": "onnxruntime_onnx", "python": "python"}


def check_name(kind: str, name: str) -> None:
    """Model and tensor names are plain names: no path separators, no '..', no control chars."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidModelConfig(
            f"{kind} name {clip(name)} is not valid: expected 1-128 of [A-Za-z0-9_.-], "
            "not starting with '.' or '-', without '..' or '/'"
        )


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, datatype and dims (without the batch dim; -1 is variable)."""

    name: str
    datatype: DataType
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class BatchingSpec:
    """The dynamic batcher and queue policy of a model."""

    dynamic: bool = False
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    priority_levels: int = 1
    default_priority: int = 1
    default_timeout_us: int = 0
    allow_timeout_override: bool = True
    preserve_ordering: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model's validated configuration."""

    name: str
    backend: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: BatchingSpec
    instance_count: int
    default_model_filename: str
    parameters: dict[str, str] = field(default_factory=dict)
    config: config_pb.ModelConfig = field(default_factory=config_pb.ModelConfig)

    def input_shape(self, spec: TensorSpec) -> list[int]:
        """The v2 metadata shape: with a leading -1 batch dim when the model batches."""
        return ([-1] if self.max_batch_size > 0 else []) + list(spec.dims)


def _tensor(kind: str, name: str, data_type: int, dims: list[int], optional: bool = False) -> TensorSpec:
    check_name(kind, name)
    type_name = config_pb.DataType.Name(data_type)
    dt = BY_CONFIG_NAME.get(type_name)
    if dt is None:
        raise InvalidModelConfig(f"{kind} {name!r}: data_type {type_name} is not supported")
    for d in dims:
        if d == 0 or d < -1:
            raise InvalidModelConfig(f"{kind} {name!r}: dims must be -1 or positive, got {list(dims)}")
    return TensorSpec(name=name, datatype=dt, dims=tuple(int(d) for d in dims), optional=optional)


def spec_from_config(cfg: config_pb.ModelConfig, *, name: str, default_max_queue_size: int = 0) -> ModelSpec:
    """Validates ``cfg`` (a parsed config) for model ``name`` (its folder name)."""
    check_name("model", name)
    if cfg.name and cfg.name != name:
        raise InvalidModelConfig(f"config names model {cfg.name!r} but its folder is {name!r}")
    backend = cfg.backend or _PLATFORMS.get(cfg.platform, "")
    if backend not in _BACKEND_PLATFORM:
        raise InvalidModelConfig(
            f"model {name!r}: backend {cfg.backend!r} / platform {cfg.platform!r} is not supported "
            f"(expected backend one of {sorted(_BACKEND_PLATFORM)} or platform one of {sorted(_PLATFORMS)})"
        )
    if cfg.max_batch_size < 0:
        raise InvalidModelConfig(f"model {name!r}: max_batch_size must be >= 0, got {cfg.max_batch_size}")
    if not cfg.input or not cfg.output:
        raise InvalidModelConfig(f"model {name!r}: config must declare at least one input and one output")
    inputs = tuple(_tensor("input", i.name, i.data_type, list(i.dims), i.optional) for i in cfg.input)
    outputs = tuple(_tensor("output", o.name, o.data_type, list(o.dims)) for o in cfg.output)
    for kind, group in (("input", inputs), ("output", outputs)):
        names = [t.name for t in group]
        if len(set(names)) != len(names):
            raise InvalidModelConfig(f"model {name!r}: duplicate {kind} names {names}")
    db = cfg.dynamic_batching
    dynamic = cfg.HasField("dynamic_batching")
    if dynamic and cfg.max_batch_size == 0:
        raise InvalidModelConfig(f"model {name!r}: dynamic_batching needs max_batch_size > 0")
    preferred = tuple(int(p) for p in db.preferred_batch_size)
    for p in preferred:
        if p < 1 or p > cfg.max_batch_size:
            raise InvalidModelConfig(
                f"model {name!r}: preferred_batch_size {p} must be in "
                f"1..max_batch_size ({cfg.max_batch_size})"
            )
    levels = max(1, int(db.priority_levels))
    default_priority = int(db.default_priority_level) or (levels + 1) // 2 if db.priority_levels else 1
    if not 1 <= default_priority <= levels:
        raise InvalidModelConfig(
            f"model {name!r}: default_priority_level {default_priority} must be in 1..{levels}"
        )
    policy = db.default_queue_policy
    has_policy = db.HasField("default_queue_policy")
    batching = BatchingSpec(
        dynamic=dynamic,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=int(db.max_queue_delay_microseconds),
        max_queue_size=int(policy.max_queue_size) if has_policy else default_max_queue_size,
        priority_levels=levels,
        default_priority=default_priority,
        default_timeout_us=int(policy.default_timeout_microseconds),
        allow_timeout_override=bool(policy.allow_timeout_override) if has_policy else True,
        preserve_ordering=bool(db.preserve_ordering),
    )
    count = sum(max(1, g.count) for g in cfg.instance_group) if cfg.instance_group else 1
    normalized = config_pb.ModelConfig()
    normalized.CopyFrom(cfg)
    normalized.name = name
    normalized.backend = backend
    normalized.platform = cfg.platform or _BACKEND_PLATFORM[backend]
    return ModelSpec(
        name=name,
        backend=backend,
        platform=normalized.platform,
        max_batch_size=int(cfg.max_batch_size),
        inputs=inputs,
        outputs=outputs,
        batching=batching,
        instance_count=count,
        default_model_filename=cfg.default_model_filename,
        parameters={k: v.string_value for k, v in cfg.parameters.items()},
        config=normalized,
    )


def read_config(model_dir: Path, *, default_max_queue_size: int = 0) -> ModelSpec:
    """Reads ``<model_dir>/config.pbtxt`` (unknown Triton fields are ignored)."""
    path = model_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidModelConfig(f"model {model_dir.name!r}: cannot read {CONFIG_FILE}: {exc}") from None
    cfg = config_pb.ModelConfig()
    try:
        text_format.Parse(text, cfg, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise InvalidModelConfig(f"model {model_dir.name!r}: {CONFIG_FILE} does not parse: {exc}") from None
    return spec_from_config(cfg, name=model_dir.name, default_max_queue_size=default_max_queue_size)


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """The numeric version folders of a model."""
    found: dict[int, Path] = {}
    for child in model_dir.iterdir() if model_dir.is_dir() else ():
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0:
            found[int(child.name)] = child
    return found
