"""Tensor signatures read from an uploaded ONNX file: the graph's inputs (less its initializers)
and outputs, with KServe v2 datatypes and -1 for symbolic or unknown dimensions. A version given
without specs gets the file's; given specs must agree with the file (INVALID_ARGUMENT naming the
tensor otherwise)."""

from __future__ import annotations

from typing import Any

from modelserve_registry import errors
from modelserve_registry.domain import ModelVersion, TensorSpec

_ONNX_TO_V2 = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


def _specs(values: Any, skip: set[str]) -> list[TensorSpec]:
    specs: list[TensorSpec] = []
    for value in values:
        if value.name in skip:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        specs.append(TensorSpec(value.name, _ONNX_TO_V2.get(tensor.elem_type, "BYTES"), dims))
    return specs


def read_onnx_signature(data: bytes) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx  # only when an ONNX artifact is uploaded

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise errors.InvalidField(f"artifact is not a valid ONNX model: {type(exc).__name__}") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    return _specs(graph.input, initializers), _specs(graph.output, set())


def _agree(kind: str, given: list[TensorSpec], found: list[TensorSpec]) -> None:
    by_name = {t.name: t for t in found}
    for spec in given:
        real = by_name.get(spec.name)
        if real is None:
            raise errors.InvalidField(
                f"{kind} tensor {spec.name!r} is not in the ONNX graph (it has {sorted(by_name)})"
            )
        if spec.datatype != real.datatype:
            raise errors.InvalidField(
                f"{kind} tensor {spec.name!r}: datatype {spec.datatype} contradicts the ONNX "
                f"graph's {real.datatype}"
            )
        fits = len(spec.shape) == len(real.shape) and all(
            a == b or a == -1 or b == -1 for a, b in zip(spec.shape, real.shape, strict=True)
        )
        if spec.shape and not fits:
            raise errors.InvalidField(
                f"{kind} tensor {spec.name!r}: shape {spec.shape} contradicts the ONNX graph's {real.shape}"
            )


def fill_onnx_signature(v: ModelVersion, data: bytes) -> None:
    inputs, outputs = read_onnx_signature(data)
    _agree("input", v.inputs, inputs)
    _agree("output", v.outputs, outputs)
    if not v.inputs:
        v.inputs = inputs
    if not v.outputs:
        v.outputs = outputs
