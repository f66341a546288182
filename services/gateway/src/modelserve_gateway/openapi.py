"""An OpenAPI 3.1 document generated from the same routes (and the KServe v2 REST surface).

Descriptions come from the proto comments: an operation's summary and description from its RPC's
comment, a schema's from its message's, a property's or parameter's from its field's. The
generated code drops the comments, so ``make proto`` writes them to ``proto_comments.json`` in this
package (scripts/proto_comments.py; ``make proto-check`` fails when it is stale)."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from modelserve_gateway.rest.kserve_routes import KSERVE_ROUTES
from modelserve_gateway.scopes import PUBLIC_METHODS, required_scope
from modelserve_gateway.transcoding.routes import Route

Descriptor = Any  # google.protobuf.descriptor.Descriptor or its upb twin
EnumDescriptor = Any

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}

_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.Int64Value": {"type": ["string", "integer", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}

STATUS_SCHEMA = {
    "type": "object",
    "description": "google.rpc.Status",
    "properties": {
        "code": {"type": "integer", "description": "The gRPC status code."},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["code", "message"],
}


@functools.cache
def proto_comments() -> dict[str, str]:
    """The proto comments by full name (``pkg.Message.field``, ``pkg.Service.Method``)."""
    text = resources.files("modelserve_gateway").joinpath("proto_comments.json").read_text(encoding="utf-8")
    comments = json.loads(text)
    assert isinstance(comments, dict)
    return comments


def _summary(comment: str) -> str:
    """The first sentence of a comment's first paragraph, on one line."""
    paragraph = " ".join(comment.split("\n\n", 1)[0].split())
    sentence, dot, _ = paragraph.partition(". ")
    return sentence + dot.strip()


def _described(schema: dict[str, Any], comment: str | None) -> dict[str, Any]:
    return {**schema, "description": comment} if comment else schema


class _Schemas:
    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Any] = {"google.rpc.Status": STATUS_SCHEMA}

    def ref(self, desc: Descriptor) -> dict[str, Any]:
        if desc.full_name in _WKT:
            return dict(_WKT[desc.full_name])
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {}  # placeholder for recursion
            self.components[desc.full_name] = self._message(desc)
        return {"$ref": f"#/components/schemas/{desc.full_name}"}

    def _message(self, desc: Descriptor) -> dict[str, Any]:
        props = {f.json_name: _described(self.field(f), self.comments.get(f.full_name)) for f in desc.fields}
        schema = {"type": "object", "properties": props, "additionalProperties": False}
        return _described(schema, self.comments.get(desc.full_name))

    def scalar(self, f: FieldDescriptor) -> dict[str, Any]:
        t = f.type
        if f.message_type is not None:
            return self.ref(f.message_type)
        if f.enum_type is not None:
            return _enum(f.enum_type)
        if t in _INT64:
            return {"type": ["string", "integer"], "pattern": r"^-?[0-9]+$", "format": "int64"}
        if t in _UINT64:
            return {"type": ["string", "integer"], "pattern": r"^[0-9]+$", "format": "uint64"}
        if t in _INT32:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if t in _UINT32:
            return {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": ["number", "string"]}
        if t == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if t == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}

    def field(self, f: Any) -> dict[str, Any]:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        if f.is_repeated:
            return {"type": "array", "items": self.scalar(f)}
        return self.scalar(f)


def _dotless(path: str) -> str:
    """Dots in path parameter names (``{model.name}``) become underscores: several OpenAPI tools
    cannot address a dotted parameter."""
    out, depth = [], 0
    for ch in path:
        depth += ch == "{"
        depth -= ch == "}"
        out.append("_" if ch == "." and depth else ch)
    return "".join(out)


def _enum(e: EnumDescriptor) -> dict[str, Any]:
    return {"type": ["string", "integer"], "enum": [v.name for v in e.values] + [v.number for v in e.values]}


def _query_params(
    desc: Descriptor, schemas: _Schemas, bound: set[str], prefix: str = "", depth: int = 0
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in desc.fields:
        name = prefix + f.name
        if name in bound or any(b.startswith(name + ".") for b in bound) and f.message_type is None:
            continue
        if name in bound:
            continue
        mt = f.message_type
        if mt is not None and mt.full_name not in _WKT:
            if not f.is_repeated and not mt.GetOptions().map_entry and depth < 2:
                out += _query_params(mt, schemas, bound, name + ".", depth + 1)
            continue
        if mt is not None and mt.full_name in (
            "google.protobuf.Struct",
            "google.protobuf.Value",
            "google.protobuf.ListValue",
            "google.protobuf.Any",
            "google.protobuf.Empty",
        ):
            continue
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schemas.field(f)}
        if comment := schemas.comments.get(f.full_name):
            param["description"] = comment
        if f.is_repeated:
            param["style"] = "form"
            param["explode"] = True
        out.append(param)
    return out


def _field_comment(desc: Descriptor, field_path: str, comments: dict[str, str]) -> str | None:
    """The comment of the field a dotted path (``model.name``) ends at."""
    field = None
    for part in field_path.split("."):
        if desc is None or part not in desc.fields_by_name:
            return None
        field = desc.fields_by_name[part]
        desc = field.message_type
    return comments.get(field.full_name) if field is not None else None


def _path_params(r: Route, comments: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": var.field_path.replace(".", "_"),
            "description": _field_comment(r.request_type.DESCRIPTOR, var.field_path, comments)
            or f"Field {var.field_path}.",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[^/]+$" if not var.multi_segment else ".+"},
        }
        for var in r.template.variables
    ]


def _rpc_text(method: str, comments: dict[str, str]) -> dict[str, str]:
    """summary and description of an operation from its RPC's comment (the method name without one)."""
    comment = comments.get(method.strip("/").replace("/", "."))
    if not comment:
        return {"summary": method}
    return {"summary": _summary(comment), "description": f"{comment}\n\ngRPC: `{method}`"}


def build_openapi(
    routes: list[Route], *, title: str = "ModelServe", version: str = "0.1.0"
) -> dict[str, Any]:
    comments = proto_comments()
    schemas = _Schemas(comments)
    paths: dict[str, Any] = {}
    errors = {
        "default": {
            "description": "An error (google.rpc.Status)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
        }
    }
    for r in routes:
        path = _dotless(r.template.openapi_path())
        op_id = r.method.strip("/").replace("/", ".") + (
            "" if r.binding_index == 0 else f".{r.binding_index}"
        )
        params = _path_params(r, comments)
        bound = {v.field_path for v in r.template.variables}
        req_desc = r.request_type.DESCRIPTOR
        if not r.body:
            params += _query_params(req_desc, schemas, bound)
        elif r.body != "*":
            params += _query_params(req_desc, schemas, bound | {r.body})
        resp_schema: dict[str, Any] = schemas.ref(r.response_type.DESCRIPTOR)
        if r.response_body:
            f = r.response_type.DESCRIPTOR.fields_by_name[r.response_body]
            resp_schema = schemas.field(f)
        content_type = "application/x-ndjson" if r.server_streaming else "application/json"
        if r.server_streaming:
            resp_schema = {
                "type": "object",
                "properties": {
                    "result": resp_schema,
                    "error": {"$ref": "#/components/schemas/google.rpc.Status"},
                },
            }
        op: dict[str, Any] = {
            "operationId": op_id,
            **_rpc_text(r.method, comments),
            "tags": [r.service_name],
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {content_type: {"schema": resp_schema}}},
                **errors,
            },
            "x-scope": required_scope(r.method),
        }
        if r.body:
            if r.body == "*":
                body_schema = schemas.ref(req_desc)
            else:
                f = req_desc.fields_by_name[r.body]
                body_schema = schemas.field(f)
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body_schema}}}
        paths.setdefault(path, {})[r.verb.lower()] = op
    _kserve_paths(paths, comments)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Generated from the google.api.http options of the fronted services.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key or a JWT."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


_V2_ERROR = {
    "default": {
        "description": "An error",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            }
        },
    }
}


def _kserve_paths(paths: dict[str, Any], comments: dict[str, str]) -> None:
    """The KServe v2 routes, from the one route table the REST router reads."""
    for route in KSERVE_ROUTES:
        for path in route.openapi_paths():
            names = re.findall(r"\{(\w+)\}", path)
            params = [
                {
                    "name": n,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[^/]+$"},
                }
                for n in names
            ]
            ok = {"description": "OK", "content": {"application/json": {"schema": route.response_schema}}}
            extra = {code: {"description": text} for code, text in route.responses.items()}
            op: dict[str, Any] = {
                "operationId": f"kserve.{route.name}" + (".versioned" if "version" in names else ""),
                "summary": route.method,
                "tags": ["KServe v2"],
                "parameters": params,
                "responses": {"200": ok, **extra, **_V2_ERROR},
                "x-scope": required_scope(route.method),
            }
            if comment := comments.get(route.method.strip("/").replace("/", ".")):
                op["description"] = f"{comment}\n\ngRPC: `{route.method}`"
            if route.method in PUBLIC_METHODS:
                op["security"] = []
            if route.request_schema is not None:
                required = route.name == "infer"
                content = {"application/json": {"schema": route.request_schema}}
                op["requestBody"] = {"required": required, "content": content}
            paths.setdefault(path, {})[route.verb.lower()] = op


def openapi_bytes(routes: list[Route]) -> bytes:
    return json.dumps(build_openapi(routes), separators=(",", ":")).encode()
