"""ModelInferRequest -> validated numpy tensors, and numpy tensors -> ModelInferResponse.

A :class:`Codec` is built once per model version, so the per-request work is dictionary lookups,
integer checks and ``numpy.frombuffer`` on the raw bytes (no copies). Every rejection says what was
expected and what arrived; client-supplied names and shapes are echoed clipped
(``modelserve_common.errors.clip``).

Memory: nothing is allocated for a tensor before its declared element count is checked against
the limits and against the bytes actually present: raw fixed-size contents must be exactly
count x size bytes, raw BYTES need at least 4 bytes (the length prefix) per element, typed
contents must hold exactly count values. So a request never costs more than a small multiple of
its own size, whatever shape it declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.errors import clip
from modelserve_common.tensors import BY_NAME, InvalidTensor, bytes_elements, decode_bytes, encode_bytes
from modelserve_model_server.backend import Tensors
from modelserve_model_server.config import ModelSpec, TensorSpec

_InferOutput = pb.ModelInferResponse.InferOutputTensor

_Header: TypeAlias = "tuple[TensorSpec, list[int], int, tuple[int, ...]]"
"""A validated input header: its spec, shape, element count and shape in the batch signature."""
_KNOWN_HEADERS = 256
"""Most validated headers a codec remembers (a client varying shapes costs validation, not memory)."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits (settings)."""

    max_inputs: int = 64
    max_outputs: int = 64
    max_elements: int = 64 * 1024 * 1024
    """Most elements in one input tensor."""
    max_request_elements: int = 64 * 1024 * 1024
    """Most elements in all input tensors of one request together."""


@dataclass
class Decoded:
    """A validated request."""

    inputs: Tensors
    rows: int
    """Batch rows (1 for a model that does not batch)."""
    outputs: tuple[str, ...]
    """Requested outputs in request order; empty = all outputs of the model."""
    raw: bool
    """The request carried raw_input_contents: the response does too."""
    signature: tuple[object, ...]
    """Non-batch shapes of the inputs: requests batch together only when these are equal."""


class Codec:
    """Decoder/validator and encoder of one model version."""

    def __init__(self, spec: ModelSpec, version: str, limits: Limits) -> None:
        self.spec = spec
        self.version = version
        self.limits = limits
        self._inputs = {t.name: t for t in spec.inputs}
        self._required = frozenset(t.name for t in spec.inputs if not t.optional)
        self._outputs = {t.name: t for t in spec.outputs}
        self._all_outputs = tuple(t.name for t in spec.outputs)
        self._batching = spec.max_batch_size > 0
        self._max_rows = spec.max_batch_size
        self._expected_inputs = sorted(self._inputs)
        self._known: dict[tuple[str, str, tuple[int, ...]], _Header] = {}

    # -- requests ---------------------------------------------------------------------------

    def decode(self, request: pb.ModelInferRequest) -> Decoded:
        tensors = request.inputs
        n = len(tensors)
        if n > self.limits.max_inputs:
            raise InvalidTensor(f"request has {n} inputs; at most {self.limits.max_inputs} are allowed")
        raw = request.raw_input_contents
        use_raw = len(raw) > 0
        if use_raw and len(raw) != n:
            raise InvalidTensor(
                f"raw_input_contents has {len(raw)} entries but the request has {n} inputs; "
                "expected one entry per input"
            )
        inputs: Tensors = {}
        rows = -1
        sig: list[object] = []
        total = 0
        known = self._known
        for i, t in enumerate(tensors):
            # (name, datatype, shape) -> its validation: clients send the same few headers over
            # and over, so each is checked once (a bounded table) rather than per request
            key = (t.name, t.datatype, tuple(t.shape))
            header = known.get(key)
            if header is None:
                header = self._header(key)
                if len(known) < _KNOWN_HEADERS:
                    known[key] = header
            spec, shape, count, sig_shape = header
            name = spec.name
            total += count
            if total > self.limits.max_request_elements:
                raise InvalidTensor(
                    f"input {name!r}: the request's inputs hold {total} elements so far; at most "
                    f"{self.limits.max_request_elements} are allowed in one request"
                )
            if name in inputs:
                raise InvalidTensor(f"input {name!r} appears more than once")
            if self._batching:
                if rows == -1:
                    rows = shape[0]
                elif shape[0] != rows:
                    raise InvalidTensor(
                        f"input {name!r}: batch dimension {shape[0]} differs from the other inputs' {rows}"
                    )
            if use_raw:
                if t.HasField("contents"):
                    raise InvalidTensor(
                        f"input {name!r} has both typed contents and raw_input_contents; "
                        "send one or the other"
                    )
                array = self._from_raw(spec, raw[i], shape, count)
            else:
                array = self._from_contents(spec, t, shape, count)
            inputs[name] = array
            sig.append(name)
            sig.append(sig_shape)
        if len(inputs) < len(self._required) or not self._required.issubset(inputs):  # names are known
            missing = sorted(self._required - inputs.keys())
            raise InvalidTensor(
                f"model {self.spec.name!r} is missing required inputs {missing}; got {sorted(inputs)}"
            )
        return Decoded(inputs, rows if self._batching else 1, self._requested(request), use_raw, tuple(sig))

    def _header(self, key: tuple[str, str, tuple[int, ...]]) -> _Header:
        """Validates one input's name, datatype and shape (raises InvalidTensor)."""
        name, datatype, dims = key
        spec = self._inputs.get(name)
        if spec is None:
            raise InvalidTensor(
                f"unexpected input {clip(name)} for model {self.spec.name!r}; "
                f"expected inputs {self._expected_inputs}"
            )
        if datatype != spec.datatype.name:
            got = (datatype or "(empty)") if len(datatype) <= 16 else clip(datatype)
            raise InvalidTensor(f"input {name!r}: expected datatype {spec.datatype.name}, got {got}")
        shape = list(dims)
        count = self._check_shape(spec, shape)
        return spec, shape, count, tuple(shape[1:]) if self._batching else tuple(shape)

    def _check_shape(self, spec: TensorSpec, shape: list[int]) -> int:
        dims = spec.dims
        want_ndim = len(dims) + (1 if self._batching else 0)
        if len(shape) != want_ndim:
            raise InvalidTensor(
                f"input {spec.name!r}: expected {want_ndim} dims {self._shape_text(spec)}, "
                f"got shape {clip(shape)}"
            )
        count = 1
        for d in shape:
            if d <= 0:
                raise InvalidTensor(
                    f"input {spec.name!r}: every dim must be positive, got shape {clip(shape)} "
                    f"(expected {self._shape_text(spec)})"
                )
            count *= d
        if self._batching:
            if shape[0] > self._max_rows:
                raise InvalidTensor(
                    f"input {spec.name!r}: batch of {shape[0]} rows exceeds max_batch_size {self._max_rows}"
                )
            rest = shape[1:]
        else:
            rest = shape
        for got, want in zip(rest, dims, strict=True):
            if want != -1 and got != want:
                raise InvalidTensor(
                    f"input {spec.name!r}: expected shape {self._shape_text(spec)}, got {clip(shape)}"
                )
        if count > self.limits.max_elements:
            raise InvalidTensor(
                f"input {spec.name!r}: {count} elements exceed the limit of {self.limits.max_elements}"
            )
        return count

    def _shape_text(self, spec: TensorSpec) -> str:
        return str(self.spec.input_shape(spec))

    @staticmethod
    def _from_raw(spec: TensorSpec, data: bytes, shape: list[int], count: int) -> np.ndarray[Any, Any]:
        dt = spec.datatype
        if dt.size == 0:  # the count is checked against the bytes before any allocation
            return decode_bytes(data, count, f"input {spec.name!r}").reshape(shape)
        expected = count * dt.size  # Python ints: no overflow
        if len(data) != expected:
            raise InvalidTensor(
                f"input {spec.name!r}: raw contents hold {len(data)} bytes; expected {expected} "
                f"(shape {shape} x {dt.size} bytes of {dt.name})"
            )
        return np.frombuffer(data, dtype=dt.dtype).reshape(shape)

    @staticmethod
    def _from_contents(
        spec: TensorSpec, t: pb.ModelInferRequest.InferInputTensor, shape: list[int], count: int
    ) -> np.ndarray[Any, Any]:
        dt = spec.datatype
        if dt.contents_field is None:
            raise InvalidTensor(
                f"input {spec.name!r}: {dt.name} has no typed contents field; send it in raw_input_contents"
            )
        values = getattr(t.contents, dt.contents_field)
        if len(values) != count:
            raise InvalidTensor(
                f"input {spec.name!r}: expected {count} elements in contents.{dt.contents_field} for shape "
                f"{shape}, got {len(values)}"
            )
        if dt.size == 0:
            array = np.empty(count, dtype=object)
            array[:] = list(values)
            return array.reshape(shape)
        return np.array(values, dtype=dt.dtype).reshape(shape)

    def _requested(self, request: pb.ModelInferRequest) -> tuple[str, ...]:
        requested = request.outputs
        if not requested:
            return ()
        n = len(requested)
        limit = min(self.limits.max_outputs, len(self._outputs))
        if n > limit:
            raise InvalidTensor(
                f"request asks for {n} outputs; model {self.spec.name!r} has {len(self._outputs)} "
                f"(limit {limit})"
            )
        names: list[str] = []
        for o in requested:
            if o.name not in self._outputs:
                raise InvalidTensor(
                    f"unknown requested output {clip(o.name)}; model {self.spec.name!r} has outputs "
                    f"{sorted(self._outputs)}"
                )
            if o.name in names:
                raise InvalidTensor(f"output {o.name!r} is requested more than once")
            names.append(o.name)
        return tuple(names)

    # -- responses --------------------------------------------------------------------------

    def encode(
        self, request: pb.ModelInferRequest, decoded: Decoded, outputs: Tensors
    ) -> pb.ModelInferResponse:
        names = decoded.outputs or self._all_outputs
        response = pb.ModelInferResponse(model_name=self.spec.name, model_version=self.version, id=request.id)
        arrays = []
        raw = decoded.raw
        for name in names:
            array = outputs.get(name)
            if array is None:
                raise RuntimeError(f"model {self.spec.name!r} did not produce output {name!r}")
            spec = self._outputs[name]
            dt = spec.datatype
            if not isinstance(array, np.ndarray):
                array = np.asarray(array, dtype=dt.dtype)
            elif array.dtype != dt.dtype:
                array = array.astype(dt.dtype)
            arrays.append((name, dt, array))
            if dt.contents_field is None:
                raw = True  # FP16/BF16 travel raw only, and a response is all raw or all typed
        add = response.outputs.add
        if raw:
            raw_out = response.raw_output_contents
            for name, dt, array in arrays:
                add(name=name, datatype=dt.name, shape=array.shape)
                raw_out.append(encode_bytes(array) if dt.size == 0 else array.tobytes())
        else:
            for name, dt, array in arrays:
                out = add(name=name, datatype=dt.name, shape=array.shape)
                field = getattr(out.contents, str(dt.contents_field))
                if dt.size == 0:
                    field.extend(bytes_elements(array))
                else:
                    field.extend(array.reshape(-1).tolist())
        return response


def datatype_of(name: str) -> str:
    """The v2 name of a datatype, validated (for metadata)."""
    return BY_NAME[name].name
