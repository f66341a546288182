"""modelserve_common.tensors: the datatype table, BYTES framing with bounds checks, element counts
checked against the bytes present before anything is allocated, raw round trips. Fuzzing is
bounded (max_examples, small inputs)."""

from __future__ import annotations

import re
import struct
import tracemalloc

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.tensors import (
    BY_CONFIG_NAME,
    BY_NAME,
    NAMES,
    InvalidTensor,
    check_raw_size,
    datatype,
    datatype_of,
    decode_bytes,
    element_count,
    encode_bytes,
    from_raw,
    split_bytes,
    to_raw,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_table_covers_the_v2_datatypes_with_their_sizes() -> None:
    assert set(NAMES) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "BF16", "FP32", "FP64", "BYTES",
    }  # fmt: skip
    sizes = {n: BY_NAME[n].size for n in NAMES}
    assert sizes["BOOL"] == sizes["UINT8"] == sizes["INT8"] == 1
    assert sizes["FP16"] == sizes["BF16"] == sizes["INT16"] == 2
    assert sizes["FP32"] == sizes["INT32"] == sizes["UINT32"] == 4
    assert sizes["FP64"] == sizes["INT64"] == sizes["UINT64"] == 8
    assert sizes["BYTES"] == 0
    for d in BY_NAME.values():
        if d.size:
            assert d.dtype.itemsize == d.size
    # BF16 travels as uint16 bits; only raw contents carry FP16/BF16
    assert BY_NAME["BF16"].dtype == np.dtype(np.uint16)
    assert BY_NAME["BF16"].contents_field is None and BY_NAME["FP16"].contents_field is None


def test_contents_fields_and_config_names_exist_in_the_contracts() -> None:
    contents = inf_pb.InferTensorContents.DESCRIPTOR.fields_by_name
    for d in BY_NAME.values():
        if d.contents_field is not None:
            assert d.contents_field in contents
        assert d.config_name in config_pb.DataType.keys()
    assert BY_CONFIG_NAME["TYPE_STRING"].name == "BYTES"


def test_datatype_of_arrays() -> None:
    assert datatype_of(np.zeros(2, np.float32)).name == "FP32"
    assert datatype_of(np.zeros(2, ">i8")).name == "INT64"  # any byte order
    assert datatype_of(np.zeros(2, np.uint16)).name == "UINT16"  # never BF16
    assert datatype_of(np.array([b"a"], dtype=object)).name == "BYTES"
    assert datatype_of(np.array(["a"])).name == "BYTES"
    with pytest.raises(InvalidTensor, match="unsupported tensor element type complex128"):
        datatype_of(np.zeros(1, np.complex128))


def test_unknown_datatype_is_invalid_argument_naming_the_known_ones() -> None:
    with pytest.raises(InvalidArgument) as exc:
        datatype("FP8", "input 'x'")
    assert exc.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.message.startswith("input 'x': unknown datatype FP8; expected one of ['BOOL'")
    with pytest.raises(InvalidTensor) as exc:
        datatype("X" * 10_000, "input 'x'")
    assert len(exc.value.message) < 1000  # clipped


def test_element_count() -> None:
    assert element_count([], "t") == 1
    assert element_count([2, 3], "t") == 6
    assert element_count([0, 5], "t") == 0
    assert element_count([2**62, 2**62], "t") == 2**124  # no overflow
    with pytest.raises(InvalidTensor, match=r"t: negative dimension in shape \[2, -1\]"):
        element_count([2, -1], "t")


def test_check_raw_size() -> None:
    assert check_raw_size(BY_NAME["FP32"], [2, 2], 16, "t") == 4
    with pytest.raises(InvalidTensor, match=r"t: shape \[2, 2\] of FP32 needs 16 bytes, got 15"):
        check_raw_size(BY_NAME["FP32"], [2, 2], 15, "t")


def test_bytes_round_trip() -> None:
    items = [b"", b"a", "é", b"\x00" * 300]
    raw = encode_bytes(items)
    assert raw[:4] == struct.pack("<I", 0) and raw[4:8] == struct.pack("<I", 1)
    assert split_bytes(raw, "t") == [b"", b"a", "é".encode(), b"\x00" * 300]
    assert decode_bytes(raw, 4, "t").tolist() == [b"", b"a", "é".encode(), b"\x00" * 300]
    assert encode_bytes(np.array([[b"x", b"y"]], dtype=object)) == encode_bytes([b"x", b"y"])


@pytest.mark.parametrize(
    ("raw", "count", "why"),
    [
        (b"\x01\x00", None, "BYTES element 0 has a truncated 4-byte length prefix"),
        (struct.pack("<I", 5) + b"ab", None, "BYTES element 0 declares 5 bytes but only 2 remain"),
        (struct.pack("<I", 2**32 - 1) + b"ab", None, "declares 4294967295 bytes"),
        (encode_bytes([b"a", b"b"]), 3, "expected 3 BYTES elements for its shape, got 2 at most"),
        (
            encode_bytes([b"a", b"b", b"c"]) + b"\0" * 4,
            3,
            "expected 3 BYTES elements for its shape, got more",
        ),
        (encode_bytes([b"aaaaaaaa"]), 2, "expected 2 BYTES elements for its shape, got 1"),
    ],
)
def test_malformed_bytes_are_invalid_tensor(raw: bytes, count: int | None, why: str) -> None:
    with pytest.raises(InvalidTensor, match=f"^t: .*{re.escape(why)}"):
        split_bytes(raw, "t", count)


def test_huge_declared_count_is_refused_before_allocating() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidTensor, match="got 2 at most"):
            decode_bytes(b"\0" * 8, 2**40, "t")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_raw_round_trip_of_every_fixed_size_datatype() -> None:
    for name in NAMES:
        if name == "BYTES":
            continue
        dt = BY_NAME[name]
        array = np.arange(6).astype(dt.dtype).reshape(2, 3)
        got_name, shape, raw = to_raw(array)
        assert shape == [2, 3] and len(raw) == 6 * dt.size
        assert got_name == ("UINT16" if name == "BF16" else name)
        back = from_raw(raw, name, shape, "t")
        assert back.dtype == dt.dtype and back.tolist() == array.tolist()


def test_raw_round_trip_of_bytes_and_errors() -> None:
    name, shape, raw = to_raw(np.array([[b"a", b"bc"]], dtype=object))
    assert (name, shape) == ("BYTES", [1, 2])
    assert from_raw(raw, "BYTES", shape, "t").tolist() == [[b"a", b"bc"]]
    with pytest.raises(InvalidTensor, match="t: unknown datatype"):
        from_raw(b"", "NOPE", [0], "t")
    with pytest.raises(InvalidTensor, match="needs 8 bytes, got 4"):
        from_raw(b"\0" * 4, "INT64", [1], "t")
    with pytest.raises(InvalidTensor, match="negative dimension"):
        from_raw(b"", "BYTES", [-1], "t")


@FUZZ
@given(raw=st.binary(max_size=200), count=st.one_of(st.none(), st.integers(0, 2**40)))
def test_random_bytes_split_or_raise_invalid_tensor(raw: bytes, count: int | None) -> None:
    try:
        items = split_bytes(raw, "t", count)
    except InvalidTensor:
        return
    assert encode_bytes(items) == raw
    if count is not None:
        assert len(items) == count


@FUZZ
@given(st.lists(st.binary(max_size=20), max_size=20))
def test_valid_bytes_round_trip(items: list[bytes]) -> None:
    assert split_bytes(encode_bytes(items), "t", len(items)) == items
