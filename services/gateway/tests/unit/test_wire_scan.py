"""The front door's protobuf wire scanning (model name, version, id read from raw request bytes)
is bounds-checked: whatever the bytes, it answers the fields or raises InvalidArgument."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve_common.errors import InvalidArgument
from modelserve_gateway.proxy import model_fields, scan_strings, stream_error


def _request(name: str = "add", version: str = "3", rid: str = "r-1") -> bytes:
    req = inf_pb.ModelInferRequest(model_name=name, model_version=version, id=rid)
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    req.parameters["priority"].int64_param = 7
    req.raw_input_contents.append(b"\x00" * 16)
    return req.SerializeToString()


def test_valid_message_fields_are_read() -> None:
    assert model_fields(_request()) == ("add", "3")
    assert scan_strings(_request(), (1, 2, 3)) == {1: "add", 2: "3", 3: "r-1"}
    assert model_fields(b"") == ("", "")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x0a", "truncated varint"),  # key, then no length
        (b"\x0a\x05ab", "only 2 remain"),  # length past the end
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 10 bytes"),
        (b"\x0a\x80", "truncated varint"),  # length varint cut short
        (b"\x08\xff", "truncated varint"),  # varint field cut short
        (b"\x09\x00\x00", "truncated fixed-width"),  # fixed64 with 2 of 8 bytes
        (b"\x0d\x00", "truncated fixed-width"),  # fixed32 with 1 of 4 bytes
        (b"\x0b\x0c", "wire type 3"),  # a group
        (b"\x0f", "wire type 7"),
        (b"\x02\x00", "field number 0"),
        (b"\x0a\x02\xc3\x28", "not UTF-8"),  # invalid UTF-8 in the model name
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01abc", "only 3 remain"),  # 2**64-1 long
    ],
)
def test_malformed_messages_are_invalid_argument(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        model_fields(raw)


def test_nested_garbage_is_skipped_by_length() -> None:
    # Field 4 (inputs) holding garbage: not parsed here (the upstream parses it), only skipped.
    raw = b"\x0a\x03add" + b"\x22\x03\xff\xff\xff"
    assert model_fields(raw) == ("add", "")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        name, version = model_fields(raw)
    except InvalidArgument:
        return
    assert isinstance(name, str) and isinstance(version, str)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(
        _request(
            draw(st.text(max_size=20)),
            draw(st.text(max_size=5)),
            draw(st.text(max_size=8)),
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete" and raw:
            del raw[pos]
    return bytes(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages_never_raise_anything_else(raw: bytes) -> None:
    try:
        found = scan_strings(raw, (1, 2, 3))
    except InvalidArgument:
        pass
    else:
        # Whatever the scanner accepts, protobuf itself reads the same top-level strings.
        try:
            parsed = inf_pb.ModelInferRequest.FromString(raw)
        except Exception:
            return  # protobuf also parses nested fields, which the scanner skips by length
        assert found.get(1, "") == parsed.model_name
        assert found.get(2, "") == parsed.model_version
        assert found.get(3, "") == parsed.id
    # An error answer for such a message is always buildable.
    inf_pb.ModelStreamInferResponse.FromString(stream_error("model 'x' not found", raw))


@given(st.text(max_size=40), st.text(max_size=10), st.text(max_size=10))
def test_valid_messages_round_trip(name: str, version: str, rid: str) -> None:
    assert scan_strings(_request(name, version, rid), (1, 2, 3)) == {
        k: v for k, v in {1: name, 2: version, 3: rid}.items() if v
    }
