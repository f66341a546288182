"""The KServe v2 REST tensor codec: v2 JSON (``{name, shape, datatype, data}``, nested or flat)
and Triton's binary tensor extension (``Inference-Header-Content-Length``, ``binary_data_size``,
``binary_data_output``, and the raw-body mode), mapped onto ModelInferRequest/Response.

Inputs always travel as ``raw_input_contents`` (gRPC requires all-raw or all-typed, and raw is
what Triton and our model server read fastest). Outputs come back either raw or typed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.tensors import BY_NAME, check_raw_size, encode_bytes, split_bytes
from modelserve_common.tensors import datatype as v2_datatype
from modelserve_gateway.transcoding.safe_json import parse_json

HEADER_LENGTH = "inference-header-content-length"
MAX_DIM = 2**63 - 1


class TensorTooLarge(InvalidArgument):
    """A tensor exceeds max_tensor_bytes (answered 413)."""

    http_status = 413


@dataclass
class OutputWishes:
    """Which outputs the client wants as binary (Triton's binary_data / binary_data_output)."""

    default_binary: bool = False
    per_output: dict[str, bool] = field(default_factory=dict)

    def binary(self, name: str) -> bool:
        return self.per_output.get(name, self.default_binary)


def _param_to_pb(name: str, value: Any, out: inference_pb.InferParameter) -> None:
    if isinstance(value, bool):
        out.bool_param = value
    elif isinstance(value, int):
        if value >= 2**63:
            out.uint64_param = value
        else:
            out.int64_param = value
    elif isinstance(value, float):
        out.double_param = value
    elif isinstance(value, str):
        out.string_param = value
    else:
        raise InvalidArgument(
            f"parameter {name!r} must be a bool, number or string, got {type(value).__name__}"
        )


def param_from_pb(p: inference_pb.InferParameter) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _params(src: Any, dst: Any, skip: tuple[str, ...], where: str) -> None:
    if src is None:
        return
    if not isinstance(src, dict):
        raise InvalidArgument(f"{where} parameters must be an object")
    for k, v in src.items():
        if k not in skip:
            _param_to_pb(k, v, dst[k])


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _json_tensor_bytes(name: str, datatype: str, shape: list[int], data: Any) -> bytes:
    flat = _flatten(data)
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidArgument(f"input {name!r}: shape {shape} needs {count} elements, data has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise InvalidArgument(f"input {name!r}: BYTES data must be strings")
        return encode_bytes(flat)
    if datatype not in BY_NAME or datatype == "BF16":
        raise InvalidArgument(f"input {name!r}: datatype {datatype!r} cannot be sent as JSON")
    dt = BY_NAME[datatype].dtype
    if datatype == "BOOL":
        if not all(isinstance(x, bool) for x in flat):
            raise InvalidArgument(f"input {name!r}: BOOL data must be true/false")
    elif any(isinstance(x, bool | str | dict) or x is None for x in flat):
        raise InvalidArgument(f"input {name!r}: {datatype} data must be numbers")
    if np.dtype(dt).kind in "iu":
        info = np.iinfo(dt)
        bad = next((x for x in flat if not isinstance(x, int) or not info.min <= x <= info.max), None)
        if bad is not None:
            raise InvalidArgument(f"input {name!r}: {bad!r} is not a {datatype} value")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.array(flat, dtype=dt)
    except (OverflowError, ValueError) as exc:
        raise InvalidArgument(f"input {name!r}: data does not fit {datatype}: {exc}") from None
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = next(x for x, ok in zip(flat, np.isfinite(arr).tolist(), strict=True) if not ok)
        raise InvalidArgument(f"input {name!r}: {bad!r} is out of the range of {datatype}")
    return arr.tobytes()


def parse_infer_request(
    body: bytes,
    header_length: int | None,
    model: str,
    version: str,
    *,
    max_tensor_bytes: int,
    max_depth: int,
) -> tuple[inference_pb.ModelInferRequest, OutputWishes]:
    """The ModelInferRequest of a v2 REST /infer body (JSON, or JSON + binary tensors)."""
    head, binary = _split_body(body, header_length)
    doc = parse_json(head, max_depth, "inference request")
    if not isinstance(doc, dict):
        raise InvalidArgument("inference request must be a JSON object")
    req = inference_pb.ModelInferRequest(model_name=model, model_version=version)
    if "id" in doc:
        rid = doc["id"]
        if not isinstance(rid, str | int) or isinstance(rid, bool):
            raise InvalidArgument(f"inference request 'id' must be a string, got {type(rid).__name__}")
        req.id = str(rid)
    params = doc.get("parameters") or {}
    _params(params, req.parameters, ("binary_data_output",), "request")
    wishes = OutputWishes(
        default_binary=bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    )
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("inference request needs a non-empty 'inputs' list")
    offset = 0
    seen: set[str] = set()
    for i, tin in enumerate(inputs):
        name, datatype, shape = _input_head(i, tin)
        if name in seen:
            raise InvalidArgument(f"input {name!r} is given twice")
        seen.add(name)
        t = req.inputs.add(name=name, datatype=datatype, shape=shape)
        tparams = tin.get("parameters") or {}
        _params(tparams, t.parameters, ("binary_data_size",), f"input {name!r}")
        size = tparams.get("binary_data_size") if isinstance(tparams, dict) else None
        if size is not None:
            raw = _binary_input(tin, name, datatype, shape, size, binary, offset, max_tensor_bytes)
            offset += size
        else:
            if "data" not in tin:
                raise InvalidArgument(f"input {name!r} has neither 'data' nor binary_data_size")
            raw = _json_tensor_bytes(name, datatype, shape, tin["data"])
            if len(raw) > max_tensor_bytes:
                raise TensorTooLarge(f"input {name!r} has {len(raw)} bytes; the limit is {max_tensor_bytes}")
        req.raw_input_contents.append(raw)
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} binary bytes after the last tensor are not claimed")
    _add_outputs(doc.get("outputs") or [], req, wishes)
    return req, wishes


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    """(JSON head, binary tail) of a body, split at Inference-Header-Content-Length when given."""
    if header_length is None:
        return body, memoryview(b"")
    if header_length < 0 or header_length > len(body):
        raise InvalidArgument(
            f"Inference-Header-Content-Length {header_length} exceeds the body size {len(body)}"
        )
    return body[:header_length], memoryview(body)[header_length:]


def _input_head(i: int, tin: Any) -> tuple[str, str, list[int]]:
    """(name, datatype, shape) of ``inputs[i]``, each checked."""
    if not isinstance(tin, dict):
        raise InvalidArgument(f"inputs[{i}] must be an object")
    name, datatype, shape = tin.get("name"), tin.get("datatype"), tin.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"inputs[{i}] needs a 'name'")
    if not isinstance(datatype, str) or datatype not in BY_NAME:
        raise InvalidArgument(f"input {name!r}: unknown datatype {datatype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape
    ):
        raise InvalidArgument(
            f"input {name!r}: shape must be a list of integers in [0, 2^63-1], got {str(shape)[:200]}"
        )
    return name, datatype, shape


def _binary_input(
    tin: dict[str, Any],
    name: str,
    datatype: str,
    shape: list[int],
    size: Any,
    binary: memoryview,
    offset: int,
    max_tensor_bytes: int,
) -> bytes:
    """The ``size`` bytes of one binary input, at ``offset`` in the binary part of the body,
    checked against the limit and, for fixed-size datatypes, the shape."""
    if "data" in tin:
        raise InvalidArgument(f"input {name!r} has both 'data' and binary_data_size; send one or the other")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"input {name!r}: binary_data_size must be a non-negative integer")
    if size > max_tensor_bytes:
        raise TensorTooLarge(f"input {name!r} has {size} bytes; the limit is {max_tensor_bytes}")
    if offset + size > len(binary):
        raise InvalidArgument(
            f"input {name!r}: binary_data_size {size} runs past the {len(binary)} binary bytes sent"
        )
    if datatype != "BYTES":
        check_raw_size(BY_NAME[datatype], shape, size, f"input {name!r}")
    return bytes(binary[offset : offset + size])


def _add_outputs(outputs: Any, req: inference_pb.ModelInferRequest, wishes: OutputWishes) -> None:
    """The requested outputs onto ``req``; their binary_data wishes onto ``wishes``."""
    if not isinstance(outputs, list):
        raise InvalidArgument("'outputs' must be a list")
    for i, tout in enumerate(outputs):
        if not isinstance(tout, dict) or not isinstance(tout.get("name"), str):
            raise InvalidArgument(f"outputs[{i}] needs a 'name'")
        o = req.outputs.add(name=tout["name"])
        oparams = tout.get("parameters") or {}
        _params(oparams, o.parameters, ("binary_data",), f"output {tout['name']!r}")
        if isinstance(oparams, dict) and "binary_data" in oparams:
            wishes.per_output[tout["name"]] = bool(oparams["binary_data"])


def raw_infer_request(
    body: bytes, model: str, version: str, meta: inference_pb.ModelMetadataResponse, max_tensor_bytes: int
) -> inference_pb.ModelInferRequest:
    """Raw-body mode: the whole body is the one input tensor of a one-input model."""
    if len(meta.inputs) != 1:
        raise InvalidArgument(
            f"raw binary requests need a model with one input; {model!r} has {len(meta.inputs)}"
        )
    if len(body) > max_tensor_bytes:
        raise TensorTooLarge(f"input has {len(body)} bytes; the limit is {max_tensor_bytes}")
    tin = meta.inputs[0]
    shape = list(tin.shape)
    if tin.datatype != "BYTES":
        found = BY_NAME.get(tin.datatype)
        if found is None:
            raise InvalidArgument(f"raw binary: unsupported datatype {tin.datatype}")
        size = found.size
        known = math.prod(d for d in shape if d >= 0) * size
        unknown = [i for i, d in enumerate(shape) if d < 0]
        if (
            len(unknown) > 1
            or (not unknown and known != len(body))
            or (unknown and (known == 0 or len(body) % known))
        ):
            raise InvalidArgument(f"raw binary: {len(body)} bytes do not fit shape {shape} of {tin.datatype}")
        if unknown:
            shape[unknown[0]] = len(body) // known
    else:
        n = len(split_bytes(body, "raw binary"))
        shape = [n if d < 0 else d for d in shape] or [n]
    req = inference_pb.ModelInferRequest(model_name=model, model_version=version)
    req.inputs.add(name=tin.name, datatype=tin.datatype, shape=shape)
    req.raw_input_contents.append(body)
    return req


def _json_number(x: float) -> Any:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _output_array(t: Any, raw: bytes | None) -> tuple[list[Any], bytes]:
    """The output's elements as JSON values, and its raw little-endian bytes."""
    dt = t.datatype
    if raw is not None:
        if dt == "BYTES":
            items = split_bytes(raw, f"output {t.name!r}")
            return [_bytes_json(b) for b in items], raw
        if dt == "BF16":
            return [], raw
        arr = np.frombuffer(raw, dtype=v2_datatype(dt, f"output {t.name!r}").dtype)
    else:
        found = BY_NAME.get(dt)
        fld = found.contents_field if found is not None else None
        if found is None or fld is None:
            raise InvalidArgument(f"output {t.name!r}: datatype {dt} arrived without raw contents")
        values = list(getattr(t.contents, fld))
        if dt == "BYTES":
            return [_bytes_json(b) for b in values], encode_bytes(values)
        arr = np.array(values, dtype=found.dtype)
    data = arr.tolist()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        data = [_json_number(x) for x in data]
    return data, arr.tobytes()


def _bytes_json(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def render_infer_response(
    resp: inference_pb.ModelInferResponse, wishes: OutputWishes
) -> tuple[bytes, int | None]:
    """The v2 REST body of a reply and, when binary tensors follow the JSON, the JSON's length."""
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.id:
        doc["id"] = resp.id
    if resp.parameters:
        doc["parameters"] = {k: param_from_pb(v) for k, v in resp.parameters.items()}
    outputs = []
    blobs: list[bytes] = []
    use_raw = len(resp.raw_output_contents) > 0
    for i, t in enumerate(resp.outputs):
        raw = resp.raw_output_contents[i] if use_raw and i < len(resp.raw_output_contents) else None
        data, raw_bytes = _output_array(t, raw)
        out: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        params = {k: param_from_pb(v) for k, v in t.parameters.items()}
        if wishes.binary(t.name) or t.datatype == "BF16":
            params["binary_data_size"] = len(raw_bytes)
            blobs.append(raw_bytes)
        else:
            out["data"] = data
        if params:
            out["parameters"] = params
        outputs.append(out)
    doc["outputs"] = outputs
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def metadata_json(meta: inference_pb.ModelMetadataResponse) -> dict[str, Any]:
    def tensors(ts: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }
