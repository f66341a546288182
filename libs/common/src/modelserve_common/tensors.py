"""KServe v2 tensors, in one place: the datatype table (names, element sizes, numpy dtypes,
typed-contents fields, model-config names), the raw layout (little-endian, row-major) and BYTES
framing (each element a 4-byte little-endian length, then its bytes). No protobuf here.

BF16 has no numpy dtype: its tensors travel as ``uint16`` arrays holding the raw bfloat16 bits,
and an array is never inferred to be BF16 (``uint16`` is UINT16). BYTES tensors are numpy
``object`` arrays of ``bytes``.

Memory: nothing is allocated for a tensor before its element count is checked against the bytes
present: fixed-size raw contents must be exactly count x size bytes, BYTES need at least 4 bytes
(the length prefix) per element. So decoding never costs more than a small multiple of the input's
own size, whatever shape it declares.

Every refusal is :class:`InvalidTensor` (INVALID_ARGUMENT); ``what`` names the tensor in the
message (``"input 'x'"``) and client-supplied names and shapes in it are clipped
(``modelserve_common.errors.clip``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve_common.errors import InvalidArgument, clip


class InvalidTensor(InvalidArgument):
    """A tensor's datatype, shape or contents are not what they claim to be."""


@dataclass(frozen=True)
class DataType:
    """One v2 datatype."""

    name: str
    dtype: np.dtype[Any]
    """numpy dtype of decoded tensors (object for BYTES, uint16 bits for BF16), little-endian."""
    size: int
    """Bytes per element on the wire; 0 for BYTES (variable)."""
    contents_field: str | None
    """Field of InferTensorContents carrying typed elements; None when only raw is allowed."""
    config_name: str
    """The name in a model config (TYPE_FP32)."""


TABLE: tuple[DataType, ...] = (
    DataType("BOOL", np.dtype(np.bool_), 1, "bool_contents", "TYPE_BOOL"),
    DataType("UINT8", np.dtype("u1"), 1, "uint_contents", "TYPE_UINT8"),
    DataType("UINT16", np.dtype("<u2"), 2, "uint_contents", "TYPE_UINT16"),
    DataType("UINT32", np.dtype("<u4"), 4, "uint_contents", "TYPE_UINT32"),
    DataType("UINT64", np.dtype("<u8"), 8, "uint64_contents", "TYPE_UINT64"),
    DataType("INT8", np.dtype("i1"), 1, "int_contents", "TYPE_INT8"),
    DataType("INT16", np.dtype("<i2"), 2, "int_contents", "TYPE_INT16"),
    DataType("INT32", np.dtype("<i4"), 4, "int_contents", "TYPE_INT32"),
    DataType("INT64", np.dtype("<i8"), 8, "int64_contents", "TYPE_INT64"),
    DataType("FP16", np.dtype("<f2"), 2, None, "TYPE_FP16"),
    DataType("BF16", np.dtype("<u2"), 2, None, "TYPE_BF16"),
    DataType("FP32", np.dtype("<f4"), 4, "fp32_contents", "TYPE_FP32"),
    DataType("FP64", np.dtype("<f8"), 8, "fp64_contents", "TYPE_FP64"),
    DataType("BYTES", np.dtype(object), 0, "bytes_contents", "TYPE_STRING"),
)

NAMES: tuple[str, ...] = tuple(d.name for d in TABLE)
"""Every v2 datatype name, in table order."""
BY_NAME: dict[str, DataType] = {d.name: d for d in TABLE}
BY_CONFIG_NAME: dict[str, DataType] = {d.config_name: d for d in TABLE}
# numpy dtype (native byte order) -> v2 datatype, for arrays a model or step produced; BF16 is
# never inferred: uint16 is UINT16
_BY_NUMPY: dict[np.dtype[Any], DataType] = {
    d.dtype.newbyteorder("="): d for d in TABLE if d.name not in ("BF16", "BYTES")
}

_LEN = struct.Struct("<I")


def datatype(name: str, what: str) -> DataType:
    """The datatype called ``name``; InvalidTensor naming the known ones otherwise."""
    found = BY_NAME.get(name)
    if found is None:
        got = (name or "(empty)") if len(name) <= 16 else clip(name)
        raise InvalidTensor(f"{what}: unknown datatype {got}; expected one of {list(NAMES)}")
    return found


def datatype_of(array: np.ndarray[Any, Any]) -> DataType:
    """The v2 datatype of an array (object, bytes and str arrays are BYTES)."""
    if array.dtype == object or array.dtype.kind in "SU":
        return BY_NAME["BYTES"]
    found = _BY_NUMPY.get(array.dtype.newbyteorder("="))
    if found is None:
        raise InvalidTensor(f"unsupported tensor element type {array.dtype}")
    return found


def element_count(shape: Sequence[int], what: str) -> int:
    """Elements of a tensor of ``shape`` (a scalar shape [] holds one); negative dims refused.
    Python ints: no overflow, however large the dims."""
    count = 1
    for d in shape:
        if d < 0:
            raise InvalidTensor(f"{what}: negative dimension in shape {clip(list(shape))}")
        count *= d
    return count


def check_raw_size(dt: DataType, shape: Sequence[int], nbytes: int, what: str) -> int:
    """The element count of a fixed-size tensor whose raw contents hold ``nbytes``; InvalidTensor
    unless they are exactly count x element size."""
    count = element_count(shape, what)
    expected = count * dt.size
    if nbytes != expected:
        raise InvalidTensor(
            f"{what}: shape {clip(list(shape))} of {dt.name} needs {expected} bytes, got {nbytes}"
        )
    return count


def split_bytes(buf: bytes, what: str, count: int | None = None) -> list[bytes]:
    """The elements of a BYTES tensor's raw contents. With ``count``, exactly that many must fill
    ``buf``, and the count is checked against the bytes present (4 per element at least) before
    anything is allocated."""
    end = len(buf)
    if count is not None and count * 4 > end:
        raise InvalidTensor(
            f"{what}: expected {count} BYTES elements for its shape, got {end // 4} at most: the raw "
            f"contents hold {end} bytes and each element starts with a 4-byte length prefix"
        )
    view = memoryview(buf)
    out: list[bytes] = []
    pos = 0
    while pos < end:
        n = len(out)
        if pos + 4 > end:
            raise InvalidTensor(
                f"{what}: BYTES element {n} has a truncated 4-byte length prefix ({end - pos} bytes left)"
            )
        (length,) = _LEN.unpack_from(view, pos)
        pos += 4
        if length > end - pos:
            raise InvalidTensor(
                f"{what}: BYTES element {n} declares {length} bytes but only {end - pos} remain"
            )
        if count is not None and n >= count:
            raise InvalidTensor(f"{what}: expected {count} BYTES elements for its shape, got more")
        out.append(bytes(view[pos : pos + length]))
        pos += length
    if count is not None and len(out) != count:
        raise InvalidTensor(f"{what}: expected {count} BYTES elements for its shape, got {len(out)}")
    return out


def decode_bytes(buf: bytes, count: int, what: str) -> np.ndarray[Any, Any]:
    """A flat ``object`` array of exactly ``count`` BYTES elements read from ``buf``."""
    items = split_bytes(buf, what, count)
    out = np.empty(count, dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _element_bytes(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    return str(item).encode()


def bytes_elements(items: Iterable[Any] | np.ndarray[Any, Any]) -> list[bytes]:
    """Elements of a BYTES tensor as bytes (str UTF-8 encoded, anything else its str())."""
    flat = items.reshape(-1) if isinstance(items, np.ndarray) else items
    return [_element_bytes(item) for item in flat]


def encode_bytes(items: Iterable[Any] | np.ndarray[Any, Any]) -> bytes:
    """Length-prefixed framing of every element (see :func:`bytes_elements`)."""
    parts: list[bytes] = []
    for b in bytes_elements(items):
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def from_raw(raw: bytes, datatype_name: str, shape: Sequence[int], what: str) -> np.ndarray[Any, Any]:
    """The array a raw tensor holds (read-only for fixed-size types: a view of ``raw``)."""
    dt = datatype(datatype_name, what)
    if dt.size == 0:
        return decode_bytes(raw, element_count(shape, what), what).reshape(shape)
    check_raw_size(dt, shape, len(raw), what)
    return np.frombuffer(raw, dtype=dt.dtype).reshape(shape)


def to_raw(array: np.ndarray[Any, Any]) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw little-endian bytes) of an array."""
    dt = datatype_of(array)
    shape = [int(d) for d in array.shape]
    if dt.size == 0:
        return dt.name, shape, encode_bytes(array)
    return dt.name, shape, np.ascontiguousarray(array, dtype=dt.dtype).tobytes()
