"""numpy arrays <-> KServe v2 wire tensors (raw little-endian contents), every datatype."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

# BF16 has no numpy dtype: the SDK carries it as float32 on the numpy side and converts to and
# from the upper 16 bits of the float32 pattern (round to nearest even) on the wire.
_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*_DTYPES, "BF16", "BYTES")


def datatype_of(arr: np.ndarray[Any, Any]) -> str:
    """The wire datatype for a numpy array (object/str/bytes arrays are BYTES)."""
    if arr.dtype.kind in ("O", "U", "S"):
        return "BYTES"
    for name, dt in _DTYPES.items():
        if arr.dtype.newbyteorder("<") == dt or arr.dtype == dt:
            return name
    raise ValueError(f"unsupported numpy dtype {arr.dtype}; use one of {', '.join(DATATYPES)}")


def to_array(value: Any, datatype: str | None = None) -> np.ndarray[Any, Any]:
    """Coerce a value (ndarray, nested list, bytes/str list) to an array of the given datatype."""
    if datatype == "BYTES" or (datatype is None and _is_text(value)):
        return np.asarray(value, dtype=object)
    if datatype == "BF16":
        return np.asarray(value, dtype=np.float32)
    if datatype is not None:
        if datatype not in _DTYPES:
            raise ValueError(f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}")
        return np.asarray(value, dtype=_DTYPES[datatype])
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 8 and not isinstance(value, np.ndarray):
        return arr  # lists of floats stay FP64 unless a datatype says otherwise
    return arr


def _is_text(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in ("O", "U", "S")
    v = value
    while isinstance(v, list | tuple) and v:
        v = v[0]
    return isinstance(v, str | bytes)


def encode(arr: np.ndarray[Any, Any], datatype: str | None = None) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw little-endian bytes) for an array."""
    dt = datatype or datatype_of(arr)
    shape = [int(d) for d in arr.shape]
    if dt == "BYTES":
        out = bytearray()
        for item in np.asarray(arr, dtype=object).reshape(-1):
            b = item.encode() if isinstance(item, str) else bytes(item)
            out += struct.pack("<I", len(b)) + b
        return dt, shape, bytes(out)
    if dt == "BF16":
        bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4")
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return dt, shape, rounded.astype("<u2").tobytes()
    if dt not in _DTYPES:
        raise ValueError(f"unknown datatype {dt!r}; use one of {', '.join(DATATYPES)}")
    return dt, shape, np.ascontiguousarray(arr, dtype=_DTYPES[dt]).tobytes()


def decode(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray[Any, Any]:
    """The array for raw wire contents (BYTES -> object array of bytes; BF16 -> float32)."""
    dims = tuple(int(d) for d in shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        i = 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise ValueError("truncated BYTES tensor")
            (n,) = struct.unpack_from("<I", raw, i)
            i += 4
            items.append(bytes(raw[i : i + n]))
            i += n
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(dims)
    if datatype == "BF16":
        u16 = np.frombuffer(raw, dtype="<u2")
        return (u16.astype("<u4") << 16).view("<f4").astype(np.float32).reshape(dims)
    if datatype not in _DTYPES:
        raise ValueError(f"unknown datatype {datatype!r}")
    return np.frombuffer(raw, dtype=_DTYPES[datatype]).reshape(dims).copy()


def from_json_tensor(t: dict[str, Any]) -> tuple[str, np.ndarray[Any, Any], str | None]:
    """A KServe v2 JSON tensor ({"name", "datatype", "shape", "data"}) -> (name, array, datatype)."""
    if "name" not in t or "data" not in t:
        raise ValueError("a JSON tensor needs 'name' and 'data'")
    dt = t.get("datatype")
    arr = to_array(t["data"], dt)
    if "shape" in t:
        arr = arr.reshape([int(d) for d in t["shape"]])
    return str(t["name"]), arr, dt
