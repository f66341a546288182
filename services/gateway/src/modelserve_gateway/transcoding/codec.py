"""proto3 JSON both ways: request messages from path variables, query string and body; responses
as lowerCamelCase JSON (int64 as strings, enums by name), as the proto3 JSON mapping says."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelserve_common.errors import InvalidArgument
from modelserve_gateway.transcoding.routes import Route
from modelserve_gateway.transcoding.safe_json import parse_json

Descriptor = Any  # google.protobuf.descriptor.Descriptor or its upb twin
EnumDescriptor = Any

# Well-known types whose JSON form is a single string or number: allowed as query parameters.
_SCALAR_WKT = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}


class BodyTooLarge(InvalidArgument):
    """The request body exceeds max_body_bytes (answered 413)."""


def _field(desc: Descriptor, name: str) -> FieldDescriptor | None:
    f: FieldDescriptor | None = desc.fields_by_name.get(name)
    if f is None:
        f = desc.fields_by_camelcase_name.get(name)
    if f is None:
        for cand in desc.fields:
            if cand.json_name == name:
                f = cand
                break
    return f


def _key_of(obj: Mapping[str, Any], f: FieldDescriptor) -> str | None:
    for k in (f.name, f.json_name):
        if k in obj:
            return k
    return None


def _set_path(root: dict[str, Any], desc: Descriptor, path: Sequence[str], value: Any, what: str) -> None:
    """Sets ``value`` at the field path in a JSON-shaped dict, reusing either spelling of a key
    the body already has."""
    cur = root
    cur_desc = desc
    for i, part in enumerate(path):
        f = _field(cur_desc, part)
        if f is None:
            raise InvalidArgument(f"{what} {'.'.join(path)!r}: {cur_desc.full_name} has no field {part!r}")
        key = _key_of(cur, f) or f.name
        last = i == len(path) - 1
        if last:
            cur[key] = value
            return
        if f.message_type is None or f.is_repeated:
            raise InvalidArgument(f"{what} {'.'.join(path)!r}: {part!r} is not a message field")
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[key] = nxt
        cur = nxt
        cur_desc = f.message_type


def _query_field(desc: Descriptor, path: list[str]) -> FieldDescriptor:
    cur = desc
    f: FieldDescriptor | None = None
    for i, part in enumerate(path):
        f = _field(cur, part)
        if f is None:
            raise InvalidArgument(f"unknown query parameter {'.'.join(path)!r}")
        if i < len(path) - 1:
            if f.message_type is None or f.is_repeated or f.message_type.GetOptions().map_entry:
                raise InvalidArgument(f"query parameter {'.'.join(path)!r}: {part!r} is not a message field")
            cur = f.message_type
    assert f is not None
    if f.message_type is not None and f.message_type.full_name not in _SCALAR_WKT:
        raise InvalidArgument(f"query parameter {'.'.join(path)!r} names a message; send it in the body")
    return f


def build_request(
    route: Route,
    path_vars: Mapping[str, str],
    query_string: bytes,
    body: bytes,
    *,
    max_depth: int,
    max_page_size: int,
) -> Message:
    """The request message of ``route`` from its three sources, grpc-gateway style: the body
    (all of it, or one field), then query parameters for fields bound by neither, then path
    variables (which win)."""
    desc = route.request_type.DESCRIPTOR
    data = _body_data(route, desc, body, max_depth)
    if query_string:
        for canonical, v in _query_values(route, desc, query_string, max_page_size).items():
            _set_path(data, desc, canonical.split("."), v, "query parameter")
    for fp, value in path_vars.items():
        _set_path(data, desc, fp.split("."), value, "path variable")
    if "page_size" in data or "pageSize" in data:
        _check_page_size(data.get("page_size", data.get("pageSize")), max_page_size)
    msg = route.request_type()
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"invalid request for {route.method}: {exc}") from None
    check_message(msg)
    return msg


def _body_data(route: Route, desc: Descriptor, body: bytes, max_depth: int) -> dict[str, Any]:
    """The JSON data the body binds: the whole request (``body: "*"``), one field, or nothing."""
    data: dict[str, Any] = {}
    if route.body:
        if body.strip():
            parsed = parse_json(body, max_depth)
            if route.body == "*":
                if not isinstance(parsed, dict):
                    raise InvalidArgument(f"request body must be a JSON object, got {type(parsed).__name__}")
                data = parsed
            else:
                _set_path(data, desc, route.body.split("."), parsed, "body")
    elif body.strip():
        raise InvalidArgument(f"{route.verb} {route.template.source} takes no request body")
    return data


def _query_values(route: Route, desc: Descriptor, query_string: bytes, max_page_size: int) -> dict[str, Any]:
    """Canonical field path -> typed value of every query parameter; a field bound by the body or
    the path, a non-repeated field given twice and an oversized page size are refused."""
    try:
        pairs = parse_qsl(
            query_string.decode("utf-8"), keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except UnicodeDecodeError:
        raise InvalidArgument("query string is not UTF-8") from None
    bound = {v.field_path for v in route.template.variables}
    repeated: dict[str, list[str]] = {}
    for key, value in pairs:
        if route.body == "*":
            raise InvalidArgument(f"unknown query parameter {key!r} (the body carries the whole request)")
        path = key.split(".")
        f = _query_field(desc, path)
        canonical = _canonical(desc, path)
        if route.body and (canonical == route.body or canonical.startswith(route.body + ".")):
            raise InvalidArgument(f"query parameter {key!r} is bound by the body")
        if canonical in bound:
            raise InvalidArgument(f"query parameter {key!r} is bound by the path")
        if f.is_repeated:
            repeated.setdefault(canonical, []).append(value)
            continue
        if canonical in repeated:
            raise InvalidArgument(f"query parameter {key!r} given twice")
        repeated[canonical] = [value]
        if canonical == "page_size":
            _check_page_size(value, max_page_size)
    out: dict[str, Any] = {}
    for canonical, values in repeated.items():
        f = _query_field(desc, canonical.split("."))
        typed = [_query_value(f, x, canonical) for x in values]
        out[canonical] = typed if f.is_repeated else typed[0]
    return out


def check_message(msg: Message) -> None:
    """Refuses what proto3 JSON parsing lets through but no service means: an enum number the enum
    does not define (open enums keep unknown numbers). Iterative over nested messages. Non-finite
    floats stay allowed where proto3 JSON spells them ("NaN", "Infinity" as strings)."""
    stack = [msg]
    while stack:
        m = stack.pop()
        for f, value in m.ListFields():
            values = value if f.is_repeated else [value]
            if f.message_type is not None:
                if f.message_type.GetOptions().map_entry:
                    vf = f.message_type.fields_by_name["value"]
                    if vf.message_type is not None:
                        stack.extend(value.values())
                    elif vf.enum_type is not None:
                        _check_enum(vf, f.name, list(value.values()))
                else:
                    stack.extend(values)
            elif f.enum_type is not None:
                _check_enum(f, f.name, values)


def _check_enum(f: FieldDescriptor, name: str, values: Sequence[Any]) -> None:
    enum = f.enum_type
    assert enum is not None
    known = enum.values_by_number
    for v in values:
        if v not in known:
            names = ", ".join(x.name for x in enum.values)
            raise InvalidArgument(f"{name}: {v} is not a {enum.name} value; one of {names}")


def _query_value(f: FieldDescriptor, value: str, name: str) -> Any:
    """Query strings are text; proto3 JSON wants JSON booleans for bool fields."""
    is_bool = f.type == FieldDescriptor.TYPE_BOOL or (
        f.message_type is not None and f.message_type.full_name == "google.protobuf.BoolValue"
    )
    is_float = f.cpp_type in _FLOATS or (
        f.message_type is not None and f.message_type.full_name in _FLOAT_WKT
    )
    if is_float and value not in ("NaN", "Infinity", "-Infinity"):
        try:
            number = float(value)
        except ValueError:
            number = 0.0  # ParseDict reports the type error
        if not math.isfinite(number):
            raise InvalidArgument(
                f"query parameter {name!r}: {value[:40]!r} is out of the range of a 64-bit float "
                '(spell infinity "Infinity")'
            )
    if not is_bool:
        return value
    if value in ("true", "1", ""):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidArgument(f"query parameter {name!r} must be true or false, got {value!r}")


_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_FLOAT_WKT = ("google.protobuf.DoubleValue", "google.protobuf.FloatValue")


def _canonical(desc: Descriptor, path: list[str]) -> str:
    names = []
    cur: Descriptor | None = desc
    for part in path:
        assert cur is not None
        f = _field(cur, part)
        assert f is not None
        names.append(f.name)
        cur = f.message_type
    return ".".join(names)


def _check_page_size(value: Any, limit: int) -> None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return  # ParseDict reports the type error
    if n > limit:
        raise InvalidArgument(f"page_size must be at most {limit}, got {n}")


def message_to_json(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=False)


def response_json(route: Route, msg: Message) -> Any:
    """The JSON of the reply, or of its ``response_body`` field."""
    if not route.response_body:
        return message_to_json(msg)
    full = message_to_json(msg)
    cur: Any = full
    desc: Descriptor | None = msg.DESCRIPTOR
    for part in route.response_body.split("."):
        assert desc is not None
        f = desc.fields_by_name[part]
        cur = cur.get(f.json_name) if isinstance(cur, dict) else None
        desc = f.message_type
        if cur is None:
            # An unset field renders as its JSON default.
            if f.is_repeated:
                return [] if not (f.message_type and f.message_type.GetOptions().map_entry) else {}
            if f.message_type is not None:
                return {}
            return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True).get(f.json_name)
    return cur
