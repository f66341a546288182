"""numpy <-> wire tensors for every datatype, BYTES and BF16 included."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve_client.tensors import datatype_of, decode, encode, from_json_tensor, to_array

NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]


@pytest.mark.parametrize("dt", NUMERIC)
def test_numeric_round_trip_is_exact_and_little_endian(dt: str) -> None:
    arr = to_array([[0, 1, 2], [3, 4, 5]] if dt != "BOOL" else [[True, False, True]], dt)
    name, shape, raw = encode(arr)
    assert name == dt and shape == list(arr.shape)
    assert raw == arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    back = decode(dt, shape, raw)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_big_endian_arrays_are_sent_little_endian() -> None:
    arr = np.array([1, 256], dtype=">i4")
    dt, _, raw = encode(arr)
    assert dt == "INT32" and raw == b"\x01\x00\x00\x00\x00\x01\x00\x00"


def test_bytes_tensor_is_length_prefixed_and_takes_str_and_bytes() -> None:
    arr = to_array([["a", "bc"], [b"\x00\xff", ""]])
    dt, shape, raw = encode(arr)
    assert dt == "BYTES" and shape == [2, 2]
    assert raw == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc\x02\x00\x00\x00\x00\xff\x00\x00\x00\x00"
    back = decode("BYTES", shape, raw)
    assert back.tolist() == [[b"a", b"bc"], [b"\x00\xff", b""]]


def test_truncated_bytes_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode("BYTES", [1], b"\x05\x00")


def test_bf16_rounds_to_nearest_even_and_comes_back_as_float32() -> None:
    x = np.array([1.0, -2.5, 3.14159, 1e-3], dtype=np.float32)
    dt, _, raw = encode(x, "BF16")
    assert dt == "BF16" and len(raw) == 8
    assert raw[:2] == b"\x80\x3f"  # 1.0 = 0x3F80
    back = decode("BF16", [4], raw)
    assert back.dtype == np.float32
    assert np.allclose(back, x, rtol=1 / 128)
    assert back[0] == 1.0 and back[1] == -2.5


def test_unknown_dtype_and_datatype_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported numpy dtype"):
        datatype_of(np.array([1 + 2j]))
    with pytest.raises(ValueError, match="unknown datatype"):
        to_array([1], "FP8")


def test_json_tensor_with_typed_data() -> None:
    name, arr, dt = from_json_tensor(
        {"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    )
    assert (name, dt, arr.dtype, arr.shape) == ("x", "INT32", np.dtype("<i4"), (2, 2))
    with pytest.raises(ValueError, match="needs 'name' and 'data'"):
        from_json_tensor({"name": "x"})
