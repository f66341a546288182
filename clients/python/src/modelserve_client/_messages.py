"""Request building and response conversion for Client and AsyncClient (pure functions over the
protobuf messages of the descriptor pool; no I/O): dicts from responses, requests from dicts,
tensors both ways, deployments, pipeline specs, upload streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from . import _pool
from ._push import chunks, prepare
from .tensors import decode, encode, to_array

REG = "modelserve.registry.v1.RegistryService"
ORC = "modelserve.orchestrator.v1.OrchestratorService"
INF = "inference.GRPCInferenceService"

TERMINAL_STATES = ("EXECUTION_STATE_SUCCEEDED", "EXECUTION_STATE_FAILED", "EXECUTION_STATE_CANCELLED")


def to_dict(msg: Any) -> dict[str, Any]:
    """A response message as a plain dict (proto field names; enums as names)."""
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def build(full_method: str, fields: Mapping[str, Any] | Any) -> Any:
    """The request message for a method from a dict (proto JSON names or field names)."""
    _, req_cls, _, _, _ = _pool.method(full_method)
    if isinstance(fields, Mapping):
        msg = req_cls()
        json_format.ParseDict(dict(fields), msg)
        return msg
    return fields


def tensor_msgs(inputs: Mapping[str, Any], datatypes: Mapping[str, str] | None = None) -> list[Any]:
    """modelserve.common.v1.Tensor messages for {name: array-like}."""
    cls = _pool.message("modelserve.common.v1.Tensor")
    out = []
    for name, value in inputs.items():
        dt = (datatypes or {}).get(name)
        arr = to_array(value, dt)
        dtype, shape, raw = encode(arr, dt)
        out.append(cls(name=name, datatype=dtype, shape=shape, raw_contents=raw))
    return out


def tensors_out(tensors: Any) -> dict[str, np.ndarray[Any, Any]]:
    return {t.name: decode(t.datatype, list(t.shape), t.raw_contents) for t in tensors}


def run_result(resp: Any) -> dict[str, Any]:
    """A RunPipelineResponse (or Execution) as {"outputs": {name: ndarray}, "trace": [...], ...}."""
    d = to_dict(resp)
    d["outputs"] = tensors_out(resp.outputs)
    d.setdefault("trace", [])
    d.setdefault("missing_outputs", [])
    return d


def infer_request(
    model: str,
    inputs: Mapping[str, Any],
    version: str | int | None,
    alias: str | None,
    outputs: list[str] | None,
    datatypes: Mapping[str, str] | None,
    parameters: Mapping[str, Any] | None,
    request_id: str | None = None,
) -> Any:
    if version is not None and alias is not None:
        raise ValueError("give version or alias, not both")
    req_cls = _pool.message("inference.ModelInferRequest")
    # An alias travels in model_version: the model server resolves version numbers and aliases.
    ref = alias if alias is not None else (str(version) if version is not None else "")
    req = req_cls(model_name=model, model_version=ref)
    if request_id:
        req.id = request_id
    for k, v in (parameters or {}).items():
        p = req.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        else:
            p.string_param = str(v)
    for name, value in inputs.items():
        dt = (datatypes or {}).get(name)
        dtype, shape, raw = encode(to_array(value, dt), dt)
        t = req.inputs.add()
        t.name, t.datatype = name, dtype
        t.shape.extend(shape)
        req.raw_input_contents.append(raw)
    for o in outputs or []:
        req.outputs.add().name = o
    return req


def infer_outputs(resp: Any) -> dict[str, np.ndarray[Any, Any]]:
    """ModelInferResponse -> {name: ndarray} (raw_output_contents, or the typed contents)."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for i, t in enumerate(resp.outputs):
        if i < len(resp.raw_output_contents):
            out[t.name] = decode(t.datatype, list(t.shape), resp.raw_output_contents[i])
            continue
        c = t.contents
        values: Any = {
            "BOOL": c.bool_contents,
            "INT8": c.int_contents,
            "INT16": c.int_contents,
            "INT32": c.int_contents,
            "INT64": c.int64_contents,
            "UINT8": c.uint_contents,
            "UINT16": c.uint_contents,
            "UINT32": c.uint_contents,
            "UINT64": c.uint64_contents,
            "FP32": c.fp32_contents,
            "FP64": c.fp64_contents,
            "BYTES": c.bytes_contents,
        }.get(t.datatype, [])
        out[t.name] = to_array(list(values), t.datatype if t.datatype != "FP16" else None).reshape(
            list(t.shape)
        )
    return out


def deployment_fields(
    model: str,
    versions: Mapping[str, int] | str | int,
    mirror: str | int | None,
    rate_limit: float | None,
    burst: int | None,
) -> dict[str, Any]:
    if not isinstance(versions, Mapping):
        versions = {str(versions): 100}
    targets: list[dict[str, Any]] = [{"version": str(v), "weight": int(w)} for v, w in versions.items()]
    if mirror is not None:
        targets.append({"version": str(mirror), "weight": 0, "mirror": True})
    dep: dict[str, Any] = {"model": model, "targets": targets}
    if rate_limit is not None:
        dep["rate_limit"] = {
            "requests_per_second": float(rate_limit),
            "burst": int(burst or max(1, rate_limit)),
        }
    return {"deployment": dep}


def pipeline_spec(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """A pipeline spec from a dict or a YAML/JSON file path."""
    if isinstance(spec, Mapping):
        return dict(spec)
    import yaml  # JSON is YAML

    with open(spec, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{spec}: a pipeline spec is a mapping")
    return data


def pipeline_request(
    method: str,
    fields: Mapping[str, Any],
    inputs: Mapping[str, Any],
    parameters: Mapping[str, str] | None,
    datatypes: Mapping[str, str] | None,
) -> Any:
    """A run/stream/execution request: `fields`, then the inputs as tensors and the parameters."""
    req = build(method, fields)
    req.inputs.extend(tensor_msgs(inputs, datatypes))
    for k, v in (parameters or {}).items():
        req.parameters[k] = str(v)
    return req


def upload_messages(
    name: str,
    path: str | Path,
    backend: str | None,
    chunk_bytes: int,
    progress: Callable[[int, int], None] | None,
    version: Mapping[str, Any],
) -> Iterator[Any]:
    """The UploadModelVersion request stream for a file or folder: the metadata message, then
    the artifact in chunks (calling `progress(sent, total)` after each)."""
    art = prepare(path)
    be = backend or art.backend
    if not be:
        raise ValueError(f"cannot tell the backend of {path}; pass backend=")
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be > 0")
    mv = {"model": name, "backend": be, "artifact_sha256": art.sha256, "artifact_format": art.artifact_format}
    meta = build(
        f"{REG}/UploadModelVersion",
        {"metadata": {"model": name, "size_bytes": len(art.data), "model_version": {**mv, **version}}},
    )
    req_cls = type(meta)

    def messages() -> Iterator[Any]:
        yield meta
        sent = 0
        for c in chunks(art.data, chunk_bytes):
            yield req_cls(chunk=c)
            sent += len(c)
            if progress is not None:
                progress(sent, len(art.data))

    return messages()
