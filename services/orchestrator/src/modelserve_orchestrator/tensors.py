"""Tensors as numpy arrays, and their KServe v2 raw layout (little-endian, row-major; BYTES elements
each prefixed by a 4-byte little-endian length). No protobuf here."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelserve_common.errors import InvalidArgument

DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_BY_KIND = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in "SU":
        return "BYTES"
    found = _BY_KIND.get(array.dtype.newbyteorder("="))
    if found is None:
        raise InvalidArgument(f"unsupported tensor element type {array.dtype}")
    return found


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """The array a raw tensor holds; INVALID_ARGUMENT when its size does not match its shape."""
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"tensor {name!r}: negative dimension in shape {shape}")
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidArgument(f"tensor {name!r}: truncated BYTES element length")
            (n,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            items.append(raw[offset : offset + n])
            offset += n
        if len(items) != count:
            raise InvalidArgument(f"tensor {name!r}: shape {shape} needs {count} elements, got {len(items)}")
        return np.array(items, dtype=object).reshape(shape)
    code = DTYPES.get(datatype)
    if code is None:
        raise InvalidArgument(
            f"tensor {name!r}: unknown datatype {datatype!r}; expected one of {sorted(DTYPES)}"
        )
    dtype = np.dtype(code)
    if len(raw) != count * dtype.itemsize:
        raise InvalidArgument(
            f"tensor {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_raw(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw bytes) of an array."""
    datatype = datatype_of(array)
    shape = [int(d) for d in array.shape]
    if datatype == "BYTES":
        out = bytearray()
        for item in array.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode()
            out += struct.pack("<I", len(b)) + b
        return datatype, shape, bytes(out)
    return datatype, shape, np.ascontiguousarray(array, dtype=np.dtype(DTYPES[datatype])).tobytes()


def dumps(tensors: Mapping[str, Any]) -> str:
    """Tensors as JSON text (for the database)."""
    items: list[dict[str, Any]] = []
    for name, array in tensors.items():
        datatype, shape, raw = to_raw(array)
        items.append({"n": name, "t": datatype, "s": shape, "d": base64.b64encode(raw).decode()})
    return json.dumps(items, separators=(",", ":"))


def loads(text: str | None) -> dict[str, np.ndarray]:
    if not text:
        return {}
    return {i["n"]: from_raw(i["n"], i["t"], i["s"], base64.b64decode(i["d"])) for i in json.loads(text)}
