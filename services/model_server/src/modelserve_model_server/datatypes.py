"""KServe v2 datatypes: numpy dtypes, element sizes, typed-contents fields, BYTES framing.

BF16 has no numpy dtype: its tensors travel as ``uint16`` arrays holding the raw bfloat16 bits.
BYTES tensors are numpy ``object`` arrays of ``bytes``; on the wire each element is a 4-byte
little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from modelserve_model_server.errors import InvalidTensor


@dataclass(frozen=True)
class DataType:
    """One v2 datatype."""

    name: str
    dtype: np.dtype
    """numpy dtype of decoded tensors (object for BYTES, uint16 bits for BF16)."""
    size: int
    """Bytes per element on the wire; 0 for BYTES (variable)."""
    contents_field: str | None
    """Field of InferTensorContents carrying typed elements; None when only raw is allowed."""
    config_name: str
    """The name in a model config (TYPE_FP32)."""


_TABLE = [
    DataType("BOOL", np.dtype(np.bool_), 1, "bool_contents", "TYPE_BOOL"),
    DataType("UINT8", np.dtype(np.uint8), 1, "uint_contents", "TYPE_UINT8"),
    DataType("UINT16", np.dtype(np.uint16), 2, "uint_contents", "TYPE_UINT16"),
    DataType("UINT32", np.dtype(np.uint32), 4, "uint_contents", "TYPE_UINT32"),
    DataType("UINT64", np.dtype(np.uint64), 8, "uint64_contents", "TYPE_UINT64"),
    DataType("INT8", np.dtype(np.int8), 1, "int_contents", "TYPE_INT8"),
    DataType("INT16", np.dtype(np.int16), 2, "int_contents", "TYPE_INT16"),
    DataType("INT32", np.dtype(np.int32), 4, "int_contents", "TYPE_INT32"),
    DataType("INT64", np.dtype(np.int64), 8, "int64_contents", "TYPE_INT64"),
    DataType("FP16", np.dtype(np.float16), 2, None, "TYPE_FP16"),
    DataType("BF16", np.dtype(np.uint16), 2, None, "TYPE_BF16"),
    DataType("FP32", np.dtype(np.float32), 4, "fp32_contents", "TYPE_FP32"),
    DataType("FP64", np.dtype(np.float64), 8, "fp64_contents", "TYPE_FP64"),
    DataType("BYTES", np.dtype(object), 0, "bytes_contents", "TYPE_STRING"),
]

BY_NAME: dict[str, DataType] = {d.name: d for d in _TABLE}
BY_CONFIG_NAME: dict[str, DataType] = {d.config_name: d for d in _TABLE}
# numpy dtype -> v2 datatype, for outputs a model produced (BF16 is never inferred: uint16 wins)
BY_NUMPY: dict[np.dtype, DataType] = {d.dtype: d for d in reversed(_TABLE) if d.name != "BF16"}
BY_NUMPY[np.dtype(np.uint16)] = BY_NAME["UINT16"]

_LEN = struct.Struct("<I")


def deserialize_bytes(buf: bytes, count: int, name: str) -> np.ndarray:
    """Splits length-prefixed BYTES elements; exactly ``count`` elements must fill ``buf``."""
    out = np.empty(count, dtype=object)
    view = memoryview(buf)
    pos, n, end = 0, 0, len(buf)
    while pos < end:
        if pos + 4 > end:
            raise InvalidTensor(
                f"input {name!r}: BYTES element {n} has a truncated 4-byte length prefix "
                f"({end - pos} bytes left)"
            )
        (length,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + length > end:
            raise InvalidTensor(
                f"input {name!r}: BYTES element {n} declares {length} bytes but only {end - pos} remain"
            )
        if n >= count:
            raise InvalidTensor(f"input {name!r}: expected {count} BYTES elements for its shape, got more")
        out[n] = bytes(view[pos : pos + length])
        pos += length
        n += 1
    if n != count:
        raise InvalidTensor(f"input {name!r}: expected {count} BYTES elements for its shape, got {n}")
    return out


def serialize_bytes(array: np.ndarray) -> bytes:
    """Length-prefixed framing of every element (str is UTF-8 encoded)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        b = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def bytes_elements(array: np.ndarray) -> list[bytes]:
    """Elements of a BYTES array as bytes (str UTF-8 encoded)."""
    return [item.encode() if isinstance(item, str) else bytes(item) for item in array.reshape(-1)]
