"""The REST front door: a small ASGI application (no framework) served by uvicorn.

Order of work per request: request id -> CORS -> public routes (health, OpenAPI, docs) -> load
shedding -> body (size-limited) -> guard (authentication, scope, rate limit) -> KServe v2 or
transcoded route -> upstream call (deadline, metadata, circuit breaker) -> response. A client that
goes away cancels the upstream call."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from prometheus_client import Histogram

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.errors import InvalidArgument, ServiceError
from modelserve_gateway.audit import audit
from modelserve_gateway.auth import Credentials
from modelserve_gateway.clients import Upstream, Upstreams
from modelserve_gateway.errors import GatewayError, error_headers
from modelserve_gateway.guard import Admission, Guard
from modelserve_gateway.scopes import is_write
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding import kserve
from modelserve_gateway.transcoding.codec import build_request, dumps, response_json
from modelserve_gateway.transcoding.routes import Route, Router

log = structlog.get_logger(__name__)

HTTP_SECONDS = Histogram(
    "modelserve_gateway_http_request_seconds",
    "REST requests by route (the gRPC method or KServe route) and HTTP status.",
    ["route", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = "application/json"
VERSION_HEADER = "x-modelserve-model-version"
_TIMEOUT_RE = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNIT = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_FORWARDED = ("traceparent", "tracestate")
_RESERVED_MD = ("x-modelserve-", "authorization", "x-api-key", "grpc-", ":")
_SKIP_OUT_MD = {REQUEST_ID_HEADER, "content-type", "grpc-status-details-bin"}
_INF = "/inference.GRPCInferenceService/"


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


def _hdrs(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


class GatewayApp:
    """The ASGI callable. Built by :func:`create_app`; holds no module-global state."""

    def __init__(
        self,
        settings: GatewaySettings,
        router: Router,
        upstreams: Upstreams,
        guard: Guard,
        openapi_json: bytes,
    ) -> None:
        self.settings = settings
        self.router = router
        self.upstreams = upstreams
        self.guard = guard
        self.in_flight = guard.in_flight
        self._openapi = openapi_json
        self._docs = _asset("docs.html")
        self._docs_js = _asset("docs.js")
        self._cors = {o for o in settings.cors_allow_origins}
        self._kserve = KServeHandler(self)

    # ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        req = Request.of(scope, receive)
        given_rid = req.headers.get(REQUEST_ID_HEADER)
        bad_rid = given_rid is not None and _PRINTABLE.fullmatch(given_rid) is None
        rid = uuid.uuid4().hex if bad_rid or not given_rid else given_rid[:128]
        request_id_var.set(rid)
        base = [(REQUEST_ID_HEADER, rid)]
        if bad_rid:  # it travels on as gRPC metadata and log field: printable ASCII only
            self._access(req, 400, 0.0, rid)
            await self._error(
                send,
                GatewayError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{REQUEST_ID_HEADER} must be printable ASCII"
                ),
                base,
                req.path == "/v2" or req.path.startswith("/v2/"),
            )
            return
        origin = req.headers.get("origin")
        if origin and self._cors and ("*" in self._cors or origin in self._cors):
            base += [
                ("access-control-allow-origin", origin),
                ("vary", "origin"),
                ("access-control-expose-headers", "*"),
            ]
            if req.method == "OPTIONS" and "access-control-request-method" in req.headers:
                verbs = self.router.allowed_verbs(req.path) or ["GET", "POST"]
                await self._send(
                    send,
                    204,
                    base
                    + [
                        ("access-control-allow-methods", ", ".join(sorted(set(verbs) | {"OPTIONS"}))),
                        ("access-control-allow-headers", ", ".join(self.settings.cors_allow_headers)),
                        ("access-control-max-age", str(self.settings.cors_max_age_s)),
                    ],
                    b"",
                )
                return
        if req.method == "GET":
            if req.path == "/openapi.json":
                await self._send(send, 200, base + [("content-type", JSON)], self._openapi)
                return
            if req.path in ("/docs", "/docs/"):
                await self._send(send, 200, base + [("content-type", "text/html; charset=utf-8")], self._docs)
                return
            if req.path == "/docs/docs.js":
                await self._send(send, 200, base + [("content-type", "text/javascript")], self._docs_js)
                return
            if req.path == "/healthz":
                await self._send(send, 200, base + [("content-type", JSON)], b'{"status":"SERVING"}')
                return
        kserve_route = req.path == "/v2" or req.path.startswith("/v2/")
        try:
            self.in_flight.acquire()
        except ServiceError as exc:
            err = GatewayError.from_service_error(exc)
            self._access(req, err.http, 0.0, rid)
            await self._error(send, err, base, kserve_route)
            return
        task = asyncio.current_task()
        watcher: asyncio.Task[None] | None = None
        started = time.perf_counter()
        status = [499]

        inner_send = send

        async def send_counted(msg: MutableMapping[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await inner_send(msg)

        send = send_counted
        try:
            try:
                async with asyncio.timeout(self.settings.body_read_timeout_s):
                    body = await req.body(self.settings.max_body_bytes)
            except TimeoutError:
                raise GatewayError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"request body not received within {self.settings.body_read_timeout_s:g} s",
                    [("connection", "close")],
                    http_override=408,
                ) from None
            watcher = asyncio.create_task(_watch_disconnect(receive, task))
            if kserve_route:
                await self._kserve.handle(req, body, send, base)
            else:
                await self._transcoded(req, body, send, base)
        except ClientGone:
            log.info("http.client_gone", path=req.path)
        except asyncio.CancelledError:
            if watcher is not None and watcher.done() and task is not None:
                task.uncancel()
                log.info("http.client_gone", path=req.path)
            else:
                raise
        except GatewayError as err:
            await self._error(send, err, base, kserve_route)
        except ServiceError as exc:
            await self._error(send, GatewayError.from_service_error(exc), base, kserve_route)
        except Exception:
            # A bug, never the client's fault: one log line with the stack, and the documented
            # JSON error shape instead of uvicorn's text/plain 500.
            log.exception("http.unhandled", path=req.path)
            if status[0] == 499:
                internal = GatewayError(grpc.StatusCode.INTERNAL, "internal error")
                await self._error(send, internal, base, kserve_route)
        finally:
            self.in_flight.release()
            if watcher is not None:
                watcher.cancel()
            elapsed = time.perf_counter() - started
            HTTP_SECONDS.labels(req.route_label, str(status[0])).observe(elapsed)
            self._access(req, status[0], elapsed, rid)

    def _access(self, req: Request, status: int, elapsed: float, rid: str) -> None:
        """The REST access log: one line per request (GATEWAY_ACCESS_LOG)."""
        if self.settings.access_log:
            log.info(
                "http.handled",
                method=req.method,
                route=req.template,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                tenant=req.tenant,
                request_id=rid,
            )

    # Helpers --------------------------------------------------------------------------------

    @staticmethod
    async def _send(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        raw = _hdrs(headers)
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _error(
        self, send: Send, err: GatewayError, base: list[tuple[str, str]], kserve_style: bool
    ) -> None:
        body = dumps({"error": err.message}) if kserve_style else dumps(err.status_json())
        headers = base + error_headers(err) + [("content-type", JSON)]
        await self._send(send, err.http, headers, body)

    def metadata(self, req: Request, admission: Admission) -> list[tuple[str, str]]:
        md = list(admission.metadata)
        for name in _FORWARDED:
            v = req.headers.get(name)
            if v:
                _check_md_value(name, v)
                md.append((name, v))
        for k, v in req.headers.items():
            if k.startswith("grpc-metadata-"):
                key = k[len("grpc-metadata-") :]
                if key and not key.startswith(_RESERVED_MD) and not key.endswith("-bin"):
                    if _MD_KEY.fullmatch(key) is None:
                        raise InvalidArgument(
                            f"header {k[:60]!r}: a gRPC metadata key has only 0-9 a-z _ . - characters"
                        )
                    _check_md_value(k, v)
                    md.append((key, v))
        return md

    def timeout(self, req: Request, upstream: Upstream, streaming: bool = False) -> float:
        default = self.settings.stream_timeout_s if streaming else upstream.timeout_s
        given = req.headers.get("grpc-timeout")
        return min(parse_grpc_timeout(given), default) if given else default

    async def call_unary(
        self,
        upstream: Upstream,
        method: str,
        request: bytes,
        metadata: list[tuple[str, str]],
        deadline_s: float,
    ) -> tuple[bytes, list[tuple[str, str]]]:
        upstream.breaker.before_call()
        call = upstream.unary(method)(request, metadata=metadata, timeout=deadline_s)
        try:
            resp: bytes = await call
        except grpc.aio.AioRpcError as exc:
            upstream.breaker.record(exc.code())
            err = GatewayError.from_rpc_error(exc)
            err.headers += _metadata_headers(exc.initial_metadata()) + _metadata_headers(
                exc.trailing_metadata()
            )
            raise err from None
        upstream.breaker.record(grpc.StatusCode.OK)
        headers = _metadata_headers(await call.initial_metadata()) + _metadata_headers(
            await call.trailing_metadata()
        )
        return resp, headers

    # Transcoded routes ----------------------------------------------------------------------

    async def _transcoded(self, req: Request, body: bytes, send: Send, base: list[tuple[str, str]]) -> None:
        found = self.router.match(req.method, req.path)
        if found is None:
            verbs = self.router.allowed_verbs(req.path)
            if verbs:
                raise GatewayError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{req.method} is not allowed on {req.path}; allowed: {', '.join(verbs)}",
                    [("allow", ", ".join(verbs))],
                    http_override=405,
                )
            raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {req.method} {req.path}")
        route, path_vars = found
        req.route_label = route.method
        req.template = f"{route.verb} {route.template.source}"
        admission = await self.guard.admit(route.method, req.credentials())
        req.tenant = admission.principal.tenant or ""
        base = base + admission.headers
        msg = build_request(
            route,
            path_vars,
            req.query,
            body,
            max_depth=self.settings.max_json_depth,
            max_page_size=self.settings.max_page_size,
        )
        upstream = self.upstreams[route.upstream]
        metadata = self.metadata(req, admission)
        write = is_write(route.method)
        try:
            if route.server_streaming:
                await self._stream(req, route, upstream, msg, metadata, send, base)
                return
            raw, md_headers = await self.call_unary(
                upstream, route.method, msg.SerializeToString(), metadata, self.timeout(req, upstream)
            )
        except GatewayError as err:
            if write:
                _audit(admission, route, path_vars, err.code.name)
            err.headers = admission.headers + err.headers
            raise
        if write:
            _audit(admission, route, path_vars, "OK")
        reply = route.response_type.FromString(raw)
        await self._send(
            send, 200, base + md_headers + [("content-type", JSON)], dumps(response_json(route, reply))
        )

    async def _stream(
        self,
        req: Request,
        route: Route,
        upstream: Upstream,
        msg: Message,
        metadata: list[tuple[str, str]],
        send: Send,
        base: list[tuple[str, str]],
    ) -> None:
        sse = "text/event-stream" in req.headers.get("accept", "")
        upstream.breaker.before_call()
        call = upstream.unary_stream(route.method)(
            msg.SerializeToString(), metadata=metadata, timeout=self.timeout(req, upstream, streaming=True)
        )
        it = call.__aiter__()
        try:
            first: bytes | None = await it.__anext__()
        except StopAsyncIteration:
            first = None
        except grpc.aio.AioRpcError as exc:
            upstream.breaker.record(exc.code())
            raise GatewayError.from_rpc_error(exc) from None
        upstream.breaker.record(grpc.StatusCode.OK)
        ctype = "text/event-stream" if sse else "application/x-ndjson"
        headers = (
            base
            + _metadata_headers(await call.initial_metadata())
            + [("content-type", ctype), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]
        )
        await send({"type": "http.response.start", "status": 200, "headers": _hdrs(headers)})

        def frame(doc: Any, event: str | None = None) -> bytes:
            data = dumps(doc)
            if not sse:
                return data + b"\n"
            return (b"event: " + event.encode() + b"\n" if event else b"") + b"data: " + data + b"\n\n"

        try:
            if first is not None:
                await send(
                    {
                        "type": "http.response.body",
                        "body": frame(
                            {"result": response_json(route, route.response_type.FromString(first))}
                        ),
                        "more_body": True,
                    }
                )
                async for raw in _rest(it):
                    doc = {"result": response_json(route, route.response_type.FromString(raw))}
                    await send({"type": "http.response.body", "body": frame(doc), "more_body": True})
        except grpc.aio.AioRpcError as exc:
            err = GatewayError.from_rpc_error(exc)
            await send(
                {
                    "type": "http.response.body",
                    "body": frame({"error": err.status_json()}, "error"),
                    "more_body": True,
                }
            )
        finally:
            call.cancel()
        await send({"type": "http.response.body", "body": b""})


async def _rest(it: Any) -> AsyncIterator[bytes]:
    while True:
        try:
            yield await it.__anext__()
        except StopAsyncIteration:
            return


def _audit(admission: Admission, route: Route, path_vars: dict[str, str], outcome: str) -> None:
    p = admission.principal
    resource = ",".join(f"{k}={v}" for k, v in path_vars.items())
    audit(who=p.id, tenant=p.tenant, action=route.method, resource=resource, outcome=outcome)


_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_MD_KEY = re.compile(r"[0-9a-z_.-]+")


def _check_md_value(header: str, value: str) -> None:
    """Headers forwarded as gRPC metadata must be printable ASCII (gRPC refuses anything else)."""
    if _PRINTABLE.fullmatch(value) is None:
        raise InvalidArgument(f"header {header[:60]!r} must be printable ASCII to travel as gRPC metadata")


def _metadata_headers(md: Any) -> list[tuple[str, str]]:
    out = []
    for k, v in md or ():
        if k in _SKIP_OUT_MD or k.endswith("-bin") or not isinstance(v, str):
            continue
        out.append(("grpc-metadata-" + k, v))
    return out


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return


def _asset(name: str) -> bytes:
    return (resources.files("modelserve_gateway") / "assets" / name).read_bytes()


# KServe v2 REST ---------------------------------------------------------------------------------

_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_KSERVE_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/v2/health/live\Z"), "live"),
    ("GET", re.compile(r"/v2/health/ready\Z"), "ready"),
    ("GET", re.compile(r"/v2\Z"), "server_metadata"),
    ("GET", re.compile(r"/v2/models/stats\Z"), "stats_all"),
    ("POST", re.compile(_MODEL + r"/infer\Z"), "infer"),
    ("GET", re.compile(_MODEL + r"/ready\Z"), "model_ready"),
    ("GET", re.compile(_MODEL + r"/config\Z"), "model_config"),
    ("GET", re.compile(_MODEL + r"/stats\Z"), "model_stats"),
    ("GET", re.compile(_MODEL + r"\Z"), "model_metadata"),
    ("POST", re.compile(r"/v2/repository/index\Z"), "repo_index"),
    ("POST", re.compile(r"/v2/repository/models/(?P<model>[^/]+)/load\Z"), "repo_load"),
    ("POST", re.compile(r"/v2/repository/models/(?P<model>[^/]+)/unload\Z"), "repo_unload"),
]
_KSERVE_METHOD = {
    "live": "ServerLive",
    "ready": "ServerReady",
    "server_metadata": "ServerMetadata",
    "stats_all": "ModelStatistics",
    "infer": "ModelInfer",
    "model_ready": "ModelReady",
    "model_config": "ModelConfig",
    "model_stats": "ModelStatistics",
    "model_metadata": "ModelMetadata",
    "repo_index": "RepositoryIndex",
    "repo_load": "RepositoryModelLoad",
    "repo_unload": "RepositoryModelUnload",
}


_KSERVE_TEMPLATE = {
    "live": "/v2/health/live",
    "ready": "/v2/health/ready",
    "server_metadata": "/v2",
    "stats_all": "/v2/models/stats",
    "infer": "/v2/models/{model}[/versions/{version}]/infer",
    "model_ready": "/v2/models/{model}[/versions/{version}]/ready",
    "model_config": "/v2/models/{model}[/versions/{version}]/config",
    "model_stats": "/v2/models/{model}[/versions/{version}]/stats",
    "model_metadata": "/v2/models/{model}[/versions/{version}]",
    "repo_index": "/v2/repository/index",
    "repo_load": "/v2/repository/models/{model}/load",
    "repo_unload": "/v2/repository/models/{model}/unload",
}
_HEADER_LENGTH_RE = re.compile(r"[0-9]{1,19}")


class KServeHandler:
    """KServe v2 REST on top of inference.GRPCInferenceService, with ``{"error": ...}`` bodies."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.settings = app.settings

    async def handle(self, req: Request, body: bytes, send: Send, base: list[tuple[str, str]]) -> None:
        from urllib.parse import unquote

        for verb, rx, route_name in _KSERVE_ROUTES:
            m = rx.match(req.path)
            if m is not None:
                name = route_name
                if verb != req.method:
                    raise GatewayError(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"{req.method} is not allowed on {req.path}",
                        [("allow", verb)],
                        http_override=405,
                    )
                break
        else:
            raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {req.method} {req.path}")
        groups = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
        model, version = groups.get("model", ""), groups.get("version", "")
        method = _INF + _KSERVE_METHOD[name]
        req.route_label = "kserve." + name
        req.template = f"{verb} {_KSERVE_TEMPLATE[name]}"
        await self._dispatch(req, send, base, name, method, model, version, body)

    async def _unary(self, req: Request, adm: Admission, method: str, msg: Message, parse: Any) -> Any:
        up = self.app.upstreams.by_service["inference.GRPCInferenceService"]
        raw, _ = await self.app.call_unary(
            up, method, msg.SerializeToString(), self.app.metadata(req, adm), self.app.timeout(req, up)
        )
        return parse(raw)

    async def _dispatch(
        self,
        req: Request,
        send: Send,
        base: list[tuple[str, str]],
        name: str,
        method: str,
        model: str,
        version: str,
        body: bytes,
    ) -> None:
        app = self.app
        adm = await app.guard.admit(method, req.credentials())
        req.tenant = adm.principal.tenant or ""
        base = base + adm.headers
        json_h = [("content-type", JSON)]
        if name in ("live", "ready"):
            try:
                if name == "live":
                    ok = (
                        await self._unary(
                            req,
                            adm,
                            method,
                            inference_pb.ServerLiveRequest(),
                            inference_pb.ServerLiveResponse.FromString,
                        )
                    ).live
                else:
                    ok = (
                        await self._unary(
                            req,
                            adm,
                            method,
                            inference_pb.ServerReadyRequest(),
                            inference_pb.ServerReadyResponse.FromString,
                        )
                    ).ready
            except GatewayError:
                ok = False
            await app._send(
                send, 200 if ok else 503, base + json_h, dumps({"live" if name == "live" else "ready": ok})
            )
            return
        if name == "server_metadata":
            r = await self._unary(
                req,
                adm,
                method,
                inference_pb.ServerMetadataRequest(),
                inference_pb.ServerMetadataResponse.FromString,
            )
            await app._send(
                send,
                200,
                base + json_h,
                dumps({"name": r.name, "version": r.version, "extensions": list(r.extensions)}),
            )
            return
        if name == "repo_index":
            from google.protobuf import json_format

            doc = kserve_json(body, self.settings.max_json_depth)
            r = await self._unary(
                req,
                adm,
                method,
                inference_pb.RepositoryIndexRequest(ready=bool(doc.get("ready", False))),
                inference_pb.RepositoryIndexResponse.FromString,
            )
            await app._send(
                send,
                200,
                base + json_h,
                dumps([json_format.MessageToDict(m, preserving_proto_field_name=True) for m in r.models]),
            )
            return
        if name in ("repo_load", "repo_unload"):
            cls = (
                inference_pb.RepositoryModelLoadRequest
                if name == "repo_load"
                else inference_pb.RepositoryModelUnloadRequest
            )
            resp_cls = (
                inference_pb.RepositoryModelLoadResponse
                if name == "repo_load"
                else inference_pb.RepositoryModelUnloadResponse
            )
            await self._unary(req, adm, method, cls(model_name=model), resp_cls.FromString)
            audit(
                who=adm.principal.id, tenant=adm.principal.tenant, action=method, resource=model, outcome="OK"
            )
            await app._send(send, 200, base + json_h, b"{}")
            return
        if name == "stats_all":
            from google.protobuf import json_format

            r = await self._unary(
                req,
                adm,
                method,
                inference_pb.ModelStatisticsRequest(),
                inference_pb.ModelStatisticsResponse.FromString,
            )
            tenant = adm.principal.tenant
            if tenant:  # a tenant sees the statistics of its own models only
                own = []
                for st in r.model_stats:
                    try:
                        await app.guard.owned_model(st.name, tenant)
                    except ServiceError:  # not theirs, or ownership unknown: leave it out
                        continue
                    own.append(st)
                r = inference_pb.ModelStatisticsResponse(model_stats=own)
            await app._send(
                send,
                200,
                base + json_h,
                dumps(json_format.MessageToDict(r, preserving_proto_field_name=True)),
            )
            return
        routed = await app.guard.route_model(
            adm, model, version, req.headers.get(self.settings.route_key_header) if name == "infer" else None
        )
        base = base + routed.headers
        if name != "infer":
            routed_version = version  # metadata/readiness: no canary draw
        else:
            routed_version = routed.version
        if name == "model_ready":
            # A model that is missing (or not the caller's) is 404 like on every other model
            # route, so the two cannot be told apart; a known model that is not ready is 400.
            r = await self._unary(
                req,
                adm,
                method,
                inference_pb.ModelReadyRequest(name=model, version=version),
                inference_pb.ModelReadyResponse.FromString,
            )
            ok = r.ready
            await app._send(send, 200 if ok else 400, base + json_h, dumps({"name": model, "ready": ok}))
            return
        if name == "model_metadata":
            r = await self._unary(
                req,
                adm,
                method,
                inference_pb.ModelMetadataRequest(name=model, version=version),
                inference_pb.ModelMetadataResponse.FromString,
            )
            await app._send(send, 200, base + json_h, dumps(kserve.metadata_json(r)))
            return
        if name in ("model_config", "model_stats"):
            from google.protobuf import json_format

            if name == "model_config":
                rc = await self._unary(
                    req,
                    adm,
                    method,
                    inference_pb.ModelConfigRequest(name=model, version=version),
                    inference_pb.ModelConfigResponse.FromString,
                )
                info: Any = json_format.MessageToDict(rc.config, preserving_proto_field_name=True)
            else:
                rs = await self._unary(
                    req,
                    adm,
                    method,
                    inference_pb.ModelStatisticsRequest(name=model, version=version),
                    inference_pb.ModelStatisticsResponse.FromString,
                )
                info = json_format.MessageToDict(rs, preserving_proto_field_name=True)
            await app._send(send, 200, base + json_h, dumps(info))
            return
        # infer
        hl = req.headers.get(kserve.HEADER_LENGTH)
        ctype = req.headers.get("content-type", "")
        if hl is None and ctype.startswith("application/octet-stream"):
            meta = await self._unary(
                req,
                adm,
                _INF + "ModelMetadata",
                inference_pb.ModelMetadataRequest(name=model, version=routed_version),
                inference_pb.ModelMetadataResponse.FromString,
            )
            infer_req = kserve.raw_infer_request(
                body, model, routed_version, meta, self.settings.max_tensor_bytes
            )
            wishes = kserve.OutputWishes(default_binary=True)
        else:
            if hl is not None and _HEADER_LENGTH_RE.fullmatch(hl.strip()) is None:
                raise InvalidArgument(f"Inference-Header-Content-Length must be a number, got {hl[:40]!r}")
            infer_req, wishes = kserve.parse_infer_request(
                body,
                int(hl) if hl is not None else None,
                model,
                routed_version,
                max_tensor_bytes=self.settings.max_tensor_bytes,
                max_depth=self.settings.max_json_depth,
            )
        resp = await self._unary(req, adm, method, infer_req, inference_pb.ModelInferResponse.FromString)
        out, header_len = kserve.render_infer_response(resp, wishes)
        headers = base + [(VERSION_HEADER, resp.model_version)]
        if header_len is None:
            headers.append(("content-type", JSON))
        else:
            headers += [("content-type", "application/octet-stream"), (kserve.HEADER_LENGTH, str(header_len))]
        await app._send(send, 200, headers, out)


def kserve_json(body: bytes, max_depth: int) -> dict[str, Any]:
    from modelserve_gateway.transcoding.codec import parse_json

    if not body.strip():
        return {}
    doc = parse_json(body, max_depth)
    if not isinstance(doc, dict):
        raise InvalidArgument("request body must be a JSON object")
    return doc
