"""THE KServe v2 REST route table: one declaration per route (verb, path template, RPC, request
builder, response renderer, OpenAPI description) that the router (``rest.kserve``) and the
OpenAPI generator (``openapi``) both read. ``[/versions/{version}]`` marks an optional segment."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.errors import InvalidArgument, ServiceError
from modelserve_common.tensors import NAMES
from modelserve_gateway.guard import Admission, Guard
from modelserve_gateway.rest.http import JSON, Headers, Request
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding import kserve
from modelserve_gateway.transcoding.safe_json import dumps, parse_json

SERVICE = inference_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
VERSION_HEADER = "x-modelserve-model-version"
_VERSIONED = "[/versions/{version}]"
_HEADER_LENGTH_RE = re.compile(r"[0-9]{1,19}")


@dataclass
class KServeCall:
    """One matched KServe request on its way through builder, upstream and renderer."""

    req: Request
    adm: Admission
    body: bytes
    model: str
    version: str  # as the client asked
    routed_version: str  # after canary routing (infer); the asked one otherwise
    settings: GatewaySettings
    guard: Guard
    unary: Callable[[str, Message], Awaitable[Any]]  # (rpc, request) -> response message
    wishes: kserve.OutputWishes | None = None  # infer: how the client wants outputs rendered


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Headers
    body: bytes


def response_type(rpc: str) -> Any:
    """The response message class of GRPCInferenceService method ``rpc``."""
    return getattr(inference_pb, SERVICE.methods_by_name[rpc].output_type.name)


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(status, [("content-type", JSON)], dumps(doc))


def _as_dict(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


Build = Callable[[KServeCall], Awaitable[Message]]
Render = Callable[[KServeCall, Any], Awaitable[Reply]]


@dataclass(frozen=True)
class KServeRoute:
    name: str
    verb: str
    path: str
    rpc: str
    build: Build
    render: Render
    names_model: bool = False  # ownership check and (infer) canary routing before the call
    tolerate_failure: bool = False  # an upstream failure renders as ``None`` (health probes)
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    responses: dict[str, str] = field(default_factory=dict)  # more statuses, for OpenAPI

    @property
    def method(self) -> str:
        return f"/{SERVICE.full_name}/{self.rpc}"

    @property
    def response_type(self) -> Any:
        return response_type(self.rpc)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        rx = re.escape(self.path).replace(re.escape(_VERSIONED), "(?:/versions/(?P<version>[^/]+))?")
        return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", rx) + r"\Z")

    def openapi_paths(self) -> list[str]:
        """The concrete paths: without and with the optional version segment."""
        if _VERSIONED not in self.path:
            return [self.path]
        return [self.path.replace(_VERSIONED, ""), self.path.replace(_VERSIONED, "/versions/{version}")]


def _const(factory: Callable[[], Message]) -> Build:
    async def build(call: KServeCall) -> Message:
        return factory()

    return build


def _named(cls: Callable[..., Message]) -> Build:
    async def build(call: KServeCall) -> Message:
        return cls(name=call.model, version=call.version)

    return build


def _repository(cls: Callable[..., Message]) -> Build:
    async def build(call: KServeCall) -> Message:
        return cls(model_name=call.model)

    return build


async def _repo_index_request(call: KServeCall) -> Message:
    doc = kserve_json(call.body, call.settings.max_json_depth)
    return inference_pb.RepositoryIndexRequest(ready=bool(doc.get("ready", False)))


async def _infer_request(call: KServeCall) -> Message:
    hl = call.req.headers.get(kserve.HEADER_LENGTH)
    ctype = call.req.headers.get("content-type", "")
    limit = call.settings.max_tensor_bytes
    if hl is None and ctype.startswith("application/octet-stream"):
        meta = await call.unary(
            "ModelMetadata", inference_pb.ModelMetadataRequest(name=call.model, version=call.routed_version)
        )
        call.wishes = kserve.OutputWishes(default_binary=True)
        return kserve.raw_infer_request(call.body, call.model, call.routed_version, meta, limit)
    if hl is not None and _HEADER_LENGTH_RE.fullmatch(hl.strip()) is None:
        raise InvalidArgument(f"Inference-Header-Content-Length must be a number, got {hl[:40]!r}")
    msg, call.wishes = kserve.parse_infer_request(
        call.body,
        int(hl) if hl is not None else None,
        call.model,
        call.routed_version,
        max_tensor_bytes=limit,
        max_depth=call.settings.max_json_depth,
    )
    return msg


def _health(key: str) -> Render:
    async def render(call: KServeCall, resp: Any) -> Reply:
        ok = resp is not None and bool(getattr(resp, key))
        return _json({key: ok}, 200 if ok else 503)

    return render


async def _server_metadata(call: KServeCall, r: Any) -> Reply:
    return _json({"name": r.name, "version": r.version, "extensions": list(r.extensions)})


async def _all_stats(call: KServeCall, r: Any) -> Reply:
    tenant = call.adm.principal.tenant
    if tenant:  # a tenant sees the statistics of its own models only
        own = []
        for st in r.model_stats:
            try:
                await call.guard.owned_model(st.name, tenant)
            except ServiceError:  # not theirs, or ownership unknown: leave it out
                continue
            own.append(st)
        r = inference_pb.ModelStatisticsResponse(model_stats=own)
    return _json(_as_dict(r))


async def _infer_response(call: KServeCall, resp: Any) -> Reply:
    assert call.wishes is not None
    out, header_len = kserve.render_infer_response(resp, call.wishes)
    headers = [(VERSION_HEADER, resp.model_version)]
    if header_len is None:
        headers.append(("content-type", JSON))
    else:
        headers += [("content-type", "application/octet-stream"), (kserve.HEADER_LENGTH, str(header_len))]
    return Reply(200, headers, out)


async def _model_ready(call: KServeCall, r: Any) -> Reply:
    # A missing model (or another tenant's) is 404 as on every model route, so the two cannot
    # be told apart; a known model that is not ready is 400.
    return _json({"name": call.model, "ready": r.ready}, 200 if r.ready else 400)


async def _model_metadata(call: KServeCall, r: Any) -> Reply:
    return _json(kserve.metadata_json(r))


async def _model_config(call: KServeCall, r: Any) -> Reply:
    return _json(_as_dict(r.config))


async def _message(call: KServeCall, r: Any) -> Reply:
    return _json(_as_dict(r))


async def _repo_index(call: KServeCall, r: Any) -> Reply:
    return _json([_as_dict(m) for m in r.models])


async def _empty(call: KServeCall, r: Any) -> Reply:
    return Reply(200, [("content-type", JSON)], b"{}")


def kserve_json(body: bytes, max_depth: int) -> dict[str, Any]:
    if not body.strip():
        return {}
    doc = parse_json(body, max_depth)
    if not isinstance(doc, dict):
        raise InvalidArgument("request body must be a JSON object")
    return doc


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(NAMES)},
        "parameters": {"type": "object"},
        "data": {},
    },
}
_OUTPUT = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
}
INFER_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {"type": "array", "items": _OUTPUT},
    },
}
_MODEL = "/v2/models/{model}" + _VERSIONED
_REPO = "/v2/repository/models/{model}"
R = KServeRoute

# Order matters: the first match wins (/v2/models/stats before /v2/models/{model}).
KSERVE_ROUTES: list[KServeRoute] = [
    R(
        "live",
        "GET",
        "/v2/health/live",
        "ServerLive",
        _const(inference_pb.ServerLiveRequest),
        _health("live"),
        tolerate_failure=True,
        responses={"503": "not live"},
    ),
    R(
        "ready",
        "GET",
        "/v2/health/ready",
        "ServerReady",
        _const(inference_pb.ServerReadyRequest),
        _health("ready"),
        tolerate_failure=True,
        responses={"503": "not ready"},
    ),
    R(
        "server_metadata",
        "GET",
        "/v2",
        "ServerMetadata",
        _const(inference_pb.ServerMetadataRequest),
        _server_metadata,
    ),
    R(
        "stats_all",
        "GET",
        "/v2/models/stats",
        "ModelStatistics",
        _const(inference_pb.ModelStatisticsRequest),
        _all_stats,
    ),
    R(
        "infer",
        "POST",
        _MODEL + "/infer",
        "ModelInfer",
        _infer_request,
        _infer_response,
        names_model=True,
        request_schema=INFER_SCHEMA,
    ),
    R(
        "model_ready",
        "GET",
        _MODEL + "/ready",
        "ModelReady",
        _named(inference_pb.ModelReadyRequest),
        _model_ready,
        names_model=True,
        responses={"400": "not ready"},
    ),
    R(
        "model_config",
        "GET",
        _MODEL + "/config",
        "ModelConfig",
        _named(inference_pb.ModelConfigRequest),
        _model_config,
        names_model=True,
    ),
    R(
        "model_stats",
        "GET",
        _MODEL + "/stats",
        "ModelStatistics",
        _named(inference_pb.ModelStatisticsRequest),
        _message,
        names_model=True,
    ),
    R(
        "model_metadata",
        "GET",
        _MODEL,
        "ModelMetadata",
        _named(inference_pb.ModelMetadataRequest),
        _model_metadata,
        names_model=True,
    ),
    R(
        "repo_index",
        "POST",
        "/v2/repository/index",
        "RepositoryIndex",
        _repo_index_request,
        _repo_index,
        request_schema={"type": "object", "properties": {"ready": {"type": "boolean"}}},
        response_schema={"type": "array", "items": {"type": "object"}},
    ),
    R(
        "repo_load",
        "POST",
        _REPO + "/load",
        "RepositoryModelLoad",
        _repository(inference_pb.RepositoryModelLoadRequest),
        _empty,
    ),
    R(
        "repo_unload",
        "POST",
        _REPO + "/unload",
        "RepositoryModelUnload",
        _repository(inference_pb.RepositoryModelUnloadRequest),
        _empty,
    ),
]
