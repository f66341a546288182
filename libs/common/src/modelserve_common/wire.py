"""One bounds-checked protobuf wire scanner: the top-level length-delimited fields of a serialized
message, read without parsing the rest (tensors and raw contents are skipped by their length,
never copied, nested messages never parsed).

Used where a service forwards raw request bytes and needs only a few routing fields: the gateway's
gRPC front door and the model server's Triton router read a ModelInferRequest's model_name (1),
model_version (2) and id (3) this way.

Whatever the bytes, a scan answers the fields or raises
:class:`modelserve_common.errors.InvalidArgument` with a message starting
``"malformed request message: "`` (the platform's wording for bytes that do not parse): a
truncated varint or field, a varint over :data:`MAX_VARINT_BYTES` bytes, a length past the end of
the buffer, field number 0, a group (wire types 3 and 4) or an unknown wire type, or a wanted
string field that is not UTF-8. The last occurrence of a field wins, as protobuf reads it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from modelserve_common.errors import InvalidArgument

MAX_VARINT_BYTES = 10
"""A varint of a 64-bit value takes at most 10 bytes; a longer one is malformed."""
MALFORMED = "malformed request message: "

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _malformed(why: str) -> InvalidArgument:
    return InvalidArgument(MALFORMED + why)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``buf[pos:]`` and the offset after it; InvalidArgument when it is truncated
    or longer than MAX_VARINT_BYTES."""
    result = 0
    end = len(buf)
    for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
        if pos >= end:
            raise _malformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
    raise _malformed(f"varint longer than {MAX_VARINT_BYTES} bytes")


def scan_fields(buf: bytes, numbers: Collection[int]) -> dict[int, bytes]:
    """The top-level length-delimited fields ``numbers`` of a serialized message, as slices of
    ``buf`` (last occurrence wins). Every other field is skipped by its length."""
    found: dict[int, bytes] = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _malformed("field number 0")
        if wire == _LEN:
            length, pos = read_varint(buf, pos)
            if length > end - pos:
                raise _malformed(f"field {number} is {length} bytes long, only {end - pos} remain")
            if number in numbers:
                found[number] = buf[pos : pos + length]
            pos += length
        elif wire == _VARINT:
            _, pos = read_varint(buf, pos)
        elif wire == _FIXED64 or wire == _FIXED32:
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise _malformed("truncated fixed-width field")
        else:
            raise _malformed(f"unsupported wire type {wire}")
    return found


def scan_strings(buf: bytes, numbers: Collection[int]) -> dict[int, str]:
    """Like :func:`scan_fields`, each found field decoded as UTF-8."""
    out: dict[int, str] = {}
    for number, value in scan_fields(buf, numbers).items():
        try:
            out[number] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed(f"string field {number} is not UTF-8") from None
    return out


def string_field(buf: bytes, number: int) -> str:
    """One top-level string field ("" when absent)."""
    return scan_strings(buf, (number,)).get(number, "")


@dataclass(frozen=True)
class InferRouting:
    """The routing fields of a serialized ModelInferRequest (also the first two of every
    model-scoped inference request: ModelMetadata/Ready/Config/Statistics)."""

    model_name: str
    model_version: str
    id: str


def infer_routing(buf: bytes) -> InferRouting:
    """model_name=1, model_version=2, id=3 of a serialized ModelInferRequest ("" when absent)."""
    f = scan_strings(buf, (1, 2, 3))
    return InferRouting(f.get(1, ""), f.get(2, ""), f.get(3, ""))
