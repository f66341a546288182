"""The protobuf wire scanner (modelserve_common.wire) is bounds-checked: whatever the bytes, it
answers the wanted top-level fields or raises InvalidArgument "malformed request message: ...",
and for a valid message it reads what protobuf itself reads. Fuzzing is bounded (max_examples,
small inputs)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.wire import infer_routing, scan_fields, scan_strings, string_field

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _request(name: str = "add", version: str = "3", rid: str = "r-1") -> inf_pb.ModelInferRequest:
    req = inf_pb.ModelInferRequest(model_name=name, model_version=version, id=rid)
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    req.parameters["priority"].int64_param = 300
    req.parameters["flag"].bool_param = True
    req.raw_input_contents.append(b"\x00" * 16)
    req.outputs.add(name="y")
    return req


def test_valid_message_fields_are_read() -> None:
    raw = _request().SerializeToString()
    assert scan_strings(raw, (1, 2, 3)) == {1: "add", 2: "3", 3: "r-1"}
    assert scan_fields(raw, (1,)) == {1: b"add"}
    assert string_field(raw, 2) == "3"
    assert infer_routing(raw) == infer_routing(raw)
    r = infer_routing(raw)
    assert (r.model_name, r.model_version, r.id) == ("add", "3", "r-1")
    assert scan_strings(b"", (1, 2)) == {}
    assert string_field(b"", 1) == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"model_name": "linear"},
        {"model_name": "linéaire", "model_version": "3", "id": "abc"},
        {"model_name": "m" * 300, "id": "x" * 200},
        {},
    ],
)
def test_infer_routing_matches_protobuf(fields: dict[str, str]) -> None:
    req = inf_pb.ModelInferRequest(**fields)
    req.raw_input_contents.append(b"\x00" * 16)
    routing = infer_routing(req.SerializeToString())
    assert (routing.model_name, routing.model_version, routing.id) == (
        req.model_name,
        req.model_version,
        req.id,
    )


def test_last_occurrence_wins_as_in_protobuf() -> None:
    body = (
        _request().SerializeToString()
        + inf_pb.ModelInferRequest(model_name="first").SerializeToString()
        + inf_pb.ModelInferRequest(model_name="second").SerializeToString()
    )
    assert infer_routing(body).model_name == inf_pb.ModelInferRequest.FromString(body).model_name == "second"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x0a", "truncated varint"),  # key, then no length
        (b"\x0a\x05ab", "only 2 remain"),  # length past the end
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 10 bytes"),
        (b"\xff" * 11, "longer than 10 bytes"),  # the key itself
        (b"\x0a\x80", "truncated varint"),  # length varint cut short
        (b"\x08\xff", "truncated varint"),  # varint field cut short
        (b"\x09\x00\x00", "truncated fixed-width"),  # fixed64 with 2 of 8 bytes
        (b"\x0d\x00", "truncated fixed-width"),  # fixed32 with 1 of 4 bytes
        (b"\x0b\x0c", "wire type 3"),  # a group
        (b"\x0c", "wire type 4"),  # a group end
        (b"\x0f", "wire type 7"),
        (b"\x02\x00", "field number 0"),
        (b"\x00\x01", "field number 0"),
        (b"\x0a\x02\xc3\x28", "not UTF-8"),  # invalid UTF-8 in the model name
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01abc", "only 3 remain"),  # 2**64-1 long
    ],
)
def test_malformed_messages_are_invalid_argument(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^malformed request message: .*{why}"):
        infer_routing(raw)


def test_unwanted_non_utf8_field_is_skipped() -> None:
    assert scan_strings(b"\x0a\x03add" + b"\x22\x02\xc3\x28", (1,)) == {1: "add"}


def test_nested_garbage_is_skipped_by_length() -> None:
    # Field 4 (inputs) holding garbage: not parsed here (the upstream parses it), only skipped.
    raw = b"\x0a\x03add" + b"\x22\x03\xff\xff\xff"
    assert scan_strings(raw, (1, 2)) == {1: "add"}


def test_large_tensors_are_skipped_not_copied() -> None:
    req = _request(name="big", version="", rid="")
    req.raw_input_contents[0] = b"\x01" * (8 << 20)
    assert scan_fields(req.SerializeToString(), (1, 3)) == {1: b"big"}


@FUZZ
@given(data=st.binary(max_size=200), numbers=st.sets(st.integers(1, 20), max_size=4))
def test_random_bytes_raise_only_invalid_argument_and_return_slices(data: bytes, numbers: set[int]) -> None:
    try:
        found = scan_fields(data, numbers)
    except InvalidArgument as exc:
        assert exc.message.startswith("malformed request message: ")
        return
    assert set(found) <= numbers
    assert sum(len(v) for v in found.values()) <= len(data)
    for value in found.values():
        assert value in data


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(
        _request(
            draw(st.text(max_size=20)), draw(st.text(max_size=5)), draw(st.text(max_size=8))
        ).SerializeToString()
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


@FUZZ
@given(mutated())
def test_mutated_valid_messages_read_what_protobuf_reads(raw: bytes) -> None:
    try:
        found = scan_strings(raw, (1, 2, 3))
    except InvalidArgument:
        return
    try:
        parsed = inf_pb.ModelInferRequest.FromString(raw)
    except Exception:
        return  # protobuf also parses nested fields, which the scanner skips by length
    assert found.get(1, "") == parsed.model_name
    assert found.get(2, "") == parsed.model_version
    assert found.get(3, "") == parsed.id


@FUZZ
@given(
    name=st.text(max_size=20),
    version=st.text(max_size=5),
    rid=st.text(max_size=10),
    raw=st.lists(st.binary(max_size=30), max_size=3),
    tail=st.binary(max_size=8),
)
def test_valid_messages_round_trip(name: str, version: str, rid: str, raw: list[bytes], tail: bytes) -> None:
    request = inf_pb.ModelInferRequest(model_name=name, model_version=version, id=rid, raw_input_contents=raw)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    data = request.SerializeToString()
    routing = infer_routing(data)
    assert (routing.model_name, routing.model_version, routing.id) == (name, version, rid)
    # whatever follows a valid message, the scanner either reads it or refuses it as malformed
    try:
        infer_routing(data + tail)
    except InvalidArgument:
        pass
