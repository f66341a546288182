"""Property tests (hypothesis, bounded) of the REST decoders: the safe JSON parser, the KServe v2
tensor decoder with Triton's binary-data extension and the raw-body mode (the BYTES tensor format
itself is fuzzed with modelserve_common.tensors in libs/common/tests/test_tensors.py).
Whatever arrives, the only exception is a documented InvalidArgument (400, or TensorTooLarge 413);
anything else would be a 500."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.tensors import BY_NAME, NAMES
from modelserve_gateway.transcoding import kserve
from modelserve_gateway.transcoding.safe_json import check_json_depth, parse_json

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
DATATYPES = [*NAMES, "FP8", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
dims = st.one_of(
    st.integers(min_value=-3, max_value=2**64 + 3),
    st.sampled_from([0, 1, 2, 3, 4]),
    st.floats(),
    st.text(max_size=2),
)


@st.composite
def tensors(draw: Any) -> dict[str, Any]:
    t: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=9)):  # mostly named
        t["name"] = draw(st.one_of(st.sampled_from(["INPUT0", "INPUT1"]), json_values))
    t["datatype"] = draw(st.one_of(st.sampled_from(DATATYPES), json_values))
    t["shape"] = draw(st.one_of(st.lists(dims, max_size=4), json_values))
    if draw(st.booleans()):
        t["data"] = draw(
            st.one_of(
                st.lists(scalars, max_size=12),
                st.lists(st.lists(scalars, max_size=3), max_size=4),
                json_values,
            )
        )
    if draw(st.booleans()):
        params: dict[str, Any] = draw(st.dictionaries(st.text(max_size=6), scalars, max_size=3))
        if draw(st.booleans()):
            params["binary_data_size"] = draw(st.one_of(st.integers(min_value=-2, max_value=64), scalars))
        t["parameters"] = params if draw(st.booleans()) else draw(json_values)
    return t


@st.composite
def infer_docs(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"inputs": draw(st.one_of(st.lists(tensors(), max_size=3), json_values))}
    if draw(st.booleans()):
        doc["id"] = draw(json_values)
    if draw(st.booleans()):
        doc["parameters"] = draw(
            st.one_of(st.dictionaries(st.text(max_size=20), scalars, max_size=3), json_values)
        )
    if draw(st.booleans()):
        doc["outputs"] = draw(
            st.one_of(
                st.lists(
                    st.fixed_dictionaries({"name": json_values}, optional={"parameters": json_values}),
                    max_size=3,
                ),
                json_values,
            )
        )
    return doc


def _decode(body: bytes, header_length: int | None, max_tensor_bytes: int = 1 << 16) -> None:
    try:
        req, wishes = kserve.parse_infer_request(
            body, header_length, "m", "", max_tensor_bytes=max_tensor_bytes, max_depth=8
        )
    except InvalidArgument as exc:
        assert exc.message and isinstance(exc.message, str)
        return
    # What is accepted is a well-formed request: one raw buffer per input, sized by its shape.
    assert len(req.raw_input_contents) == len(req.inputs) > 0
    for t, raw in zip(req.inputs, req.raw_input_contents, strict=True):
        assert all(0 <= d < 2**63 for d in t.shape)
        if t.datatype != "BYTES":
            assert len(raw) == math.prod(t.shape) * BY_NAME[t.datatype].size
        assert len(raw) <= max_tensor_bytes
    req.SerializeToString()
    assert isinstance(wishes, kserve.OutputWishes)


@FUZZ
@given(doc=infer_docs())
def test_json_infer_requests_decode_or_400(doc: dict[str, Any]) -> None:
    _decode(json.dumps(doc).encode(), None)


@FUZZ
@given(doc=infer_docs(), blob=st.binary(max_size=64), cut=st.integers(min_value=-4, max_value=200))
def test_binary_extension_decodes_or_400(doc: dict[str, Any], blob: bytes, cut: int) -> None:
    head = json.dumps(doc).encode()
    body = head + blob
    _decode(body, len(head))
    _decode(body, cut)  # a header length that lies


@FUZZ
@given(
    raw=st.binary(max_size=200), header_length=st.one_of(st.none(), st.integers(min_value=-1, max_value=220))
)
def test_arbitrary_bytes_decode_or_400(raw: bytes, header_length: int | None) -> None:
    _decode(raw, header_length)


@FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from(list('[]{}",:\\0123456789.eE+-truefalsnNaIiy \ud800x')), max_size=120
    )
)
def test_json_parser_only_raises_invalid_argument(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    try:
        value = parse_json(raw, 6)
    except InvalidArgument:
        return
    # Accepted: encodable as UTF-8, finite, 64-bit integers, depth within the limit.
    out = json.dumps(value, allow_nan=False).encode("utf-8")
    assert out
    check_json_depth(out, 6)


@FUZZ
@given(
    depth=st.integers(min_value=0, max_value=5000), noise=st.sampled_from([b"", b'"a[",', b"1,", b'{"k":'])
)
def test_depth_scan_matches_structure(depth: int, noise: bytes) -> None:
    raw = b"[" * depth + b"]" * depth
    try:
        check_json_depth(raw, 32)
        assert depth <= 32
    except InvalidArgument:
        assert depth > 32
    # Brackets inside strings never count.
    check_json_depth(b'["' + b"[" * depth + b'"]', 32)


@FUZZ
@given(
    body=st.binary(max_size=64),
    datatype=st.sampled_from([*NAMES, "FP8"]),
    shape=st.lists(st.integers(min_value=-2, max_value=8), max_size=3),
    n_inputs=st.integers(min_value=0, max_value=2),
)
def test_raw_body_mode_decodes_or_400(body: bytes, datatype: str, shape: list[int], n_inputs: int) -> None:
    meta = inference_pb.ModelMetadataResponse(name="m")
    for i in range(n_inputs):
        meta.inputs.add(name=f"IN{i}", datatype=datatype, shape=shape)
    try:
        req = kserve.raw_infer_request(body, "m", "", meta, 1 << 16)
    except InvalidArgument:
        return
    assert req.raw_input_contents[0] == body
    t = req.inputs[0]
    if datatype != "BYTES":
        assert math.prod(t.shape) * BY_NAME[datatype].size == len(body)


tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ab\n')), max_size=6)
nested = st.recursive(
    st.one_of(st.integers(), tricky_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


@FUZZ
@given(value=nested, limit=st.integers(min_value=1, max_value=8))
def test_depth_prescan_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    from modelserve_gateway.transcoding.safe_json import json_depth

    raw = json.dumps(value).encode()
    real = json_depth(value, 1_000)
    try:
        check_json_depth(raw, limit)
    except InvalidArgument:
        assert real > limit
    else:
        assert real <= limit
