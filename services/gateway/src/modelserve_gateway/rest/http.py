"""What every REST handler shares: the parsed request, response writers, the deadline of an
upstream call and the unary call itself (GatewayError out, response headers back)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import grpc

from modelserve_common.errors import InvalidArgument
from modelserve_gateway import metadata
from modelserve_gateway.auth import Credentials
from modelserve_gateway.clients import Upstream
from modelserve_gateway.errors import GatewayError, error_headers
from modelserve_gateway.guard import Admission
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.safe_json import dumps

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[str, str]]

JSON = "application/json"
_TIMEOUT_RE = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNIT = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(value: str) -> float:
    m = _TIMEOUT_RE.match(value.strip())
    if m is None or int(m.group(1)) == 0:
        raise InvalidArgument(f"Grpc-Timeout must look like '10S' or '250m' (positive), got {value[:40]!r}")
    return int(m.group(1)) * _TIMEOUT_UNIT[m.group(2)]


class PayloadTooLarge(InvalidArgument):
    http_status = 413


class ClientGone(Exception):
    """The client closed the connection."""


@dataclass
class Request:
    scope: Scope
    receive: Receive
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    route_label: str = "unmatched"
    template: str = "unmatched"  # the route template, for the access log
    tenant: str = ""  # the caller's tenant once authenticated ("" = none or a trusted caller)

    @classmethod
    def of(cls, scope: Scope, receive: Receive) -> Request:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name not in headers:
                headers[name] = v.decode("latin-1")
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        return cls(scope, receive, scope["method"], path, scope.get("query_string", b""), headers)

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone()
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def credentials(self) -> Credentials:
        return Credentials(self.headers.get("authorization"), self.headers.get("x-api-key"))

    def deadline(self, settings: GatewaySettings, upstream: Upstream, streaming: bool = False) -> float:
        """The upstream deadline: the upstream's (or the stream) default, shortened by Grpc-Timeout."""
        default = settings.stream_timeout_s if streaming else upstream.timeout_s
        given = self.headers.get("grpc-timeout")
        return min(parse_grpc_timeout(given), default) if given else default


def raw_headers(pairs: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


async def send_response(send: Send, status: int, headers: Headers, body: bytes) -> None:
    raw = raw_headers(headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: GatewayError, base: Headers, kserve_style: bool) -> None:
    """The documented error shapes: ``{"error": ...}`` on /v2, google.rpc.Status JSON elsewhere."""
    body = dumps({"error": err.message}) if kserve_style else dumps(err.status_json())
    headers = base + error_headers(err) + [("content-type", JSON)]
    await send_response(send, err.http, headers, body)


async def call_unary(
    settings: GatewaySettings,
    req: Request,
    adm: Admission,
    upstream: Upstream,
    method: str,
    request: bytes,
) -> tuple[bytes, Headers]:
    """One unary upstream call for a REST request: the metadata policy, the request's deadline,
    the breaker (in Upstream); an upstream failure becomes a GatewayError carrying its metadata."""
    md = metadata.from_http(req.headers, adm)
    try:
        reply = await upstream.call_unary(method, request, md, req.deadline(settings, upstream))
    except grpc.aio.AioRpcError as exc:
        err = GatewayError.from_rpc_error(exc)
        err.headers += metadata.to_http(exc.initial_metadata()) + metadata.to_http(exc.trailing_metadata())
        raise err from None
    return reply.message, metadata.to_http(reply.initial_metadata) + metadata.to_http(reply.trailing_metadata)
