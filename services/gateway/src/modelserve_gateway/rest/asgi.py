"""The REST front door: a small ASGI application (no framework) served by uvicorn.

Order of work per request: request id -> CORS -> public routes (health, OpenAPI, docs) -> load
shedding -> body (size-limited) -> guard (authentication, scope, rate limit) -> KServe v2 or
transcoded route -> upstream call (deadline, metadata, circuit breaker) -> response. A client that
goes away cancels the upstream call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import grpc
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import Histogram

from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.errors import ServiceError
from modelserve_common.tracing import extract_context, response_headers
from modelserve_gateway.clients import INFERENCE_SERVICE, Upstreams
from modelserve_gateway.console import ConsoleAssets
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.guard import Guard
from modelserve_gateway.metadata import PRINTABLE
from modelserve_gateway.metrics import REQUESTS, tenant_label
from modelserve_gateway.rest.artifacts import ArtifactRoutes
from modelserve_gateway.rest.http import (
    JSON,
    ClientGone,
    Headers,
    Receive,
    Request,
    Scope,
    Send,
    send_error,
    send_response,
)
from modelserve_gateway.rest.kserve import KServeRoutes
from modelserve_gateway.rest.transcoded import TranscodedRoutes
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.routes import Router

log = structlog.get_logger(__name__)

HTTP_SECONDS = Histogram(
    "modelserve_gateway_http_request_seconds",
    "REST requests by route (the gRPC method or KServe route) and HTTP status.",
    ["route", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


WATCH_AFTER_S = 0.05
"""How long a request runs before a task watches for its client going away."""


def _is_kserve(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


class GatewayApp:
    """The ASGI callable; holds no module-global state."""

    def __init__(
        self,
        settings: GatewaySettings,
        router: Router,
        upstreams: Upstreams,
        guard: Guard,
        openapi_json: bytes,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self._tracer = tracer_provider.get_tracer("modelserve.gateway") if tracer_provider else None
        self.router = router
        self.upstreams = upstreams
        self.guard = guard
        self.in_flight = guard.in_flight
        self._cors = set(settings.cors_allow_origins)
        self._public = {
            "/openapi.json": (JSON, openapi_json),
            "/healthz": (JSON, b'{"status":"SERVING"}'),
        }
        self._transcoded = TranscodedRoutes(settings, router, upstreams, guard)
        self._kserve = KServeRoutes(settings, upstreams.by_service[INFERENCE_SERVICE.full_name], guard)
        self._artifacts = ArtifactRoutes(settings, upstreams, guard)
        self._console = ConsoleAssets(settings)  # /console and /docs (console.py)
        # (route, status, tenant) -> the bound children of HTTP_SECONDS and REQUESTS
        self._metrics: dict[tuple[str, int, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request.of(scope, receive)
        if self._tracer is None:
            await self._http(req, send, [])
            return
        # One trace per request: the client's W3C traceparent is the parent when it sends one.
        with self._tracer.start_as_current_span(
            f"HTTP {req.method}",
            context=extract_context(req.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": req.method, "url.path": req.path[:200]},
        ) as span:
            try:
                await self._http(req, send, response_headers(span))
            finally:
                span.update_name(f"{req.method} {req.route_label}")
                span.set_attribute("http.route", req.route_label)

    async def _http(self, req: Request, send: Send, trace_headers: Headers) -> None:
        """One HTTP request; ``trace_headers`` go on every answer (tracing on)."""
        given = req.headers.get(REQUEST_ID_HEADER)
        bad_rid = given is not None and PRINTABLE.fullmatch(given) is None
        rid = uuid.uuid4().hex if bad_rid or not given else given[:128]
        request_id_var.set(rid)
        base: Headers = [(REQUEST_ID_HEADER, rid), *trace_headers]
        if bad_rid:  # it travels on as gRPC metadata and log field: printable ASCII only
            self._access(req, 400, 0.0, rid)
            err = GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{REQUEST_ID_HEADER} must be printable ASCII"
            )
            await send_error(send, err, base, _is_kserve(req.path))
            return
        if await self._cors_or_public(req, send, base):
            return
        try:
            self.in_flight.acquire()
        except ServiceError as exc:
            err = GatewayError.from_service_error(exc)
            self._access(req, err.http, 0.0, rid)
            await send_error(send, err, base, _is_kserve(req.path))
            return
        try:
            await self._admitted(req, send, base, rid)
        finally:
            self.in_flight.release()

    async def _cors_or_public(self, req: Request, send: Send, base: Headers) -> bool:
        """Adds the CORS headers to ``base``; answers a preflight or a public GET (True)."""
        origin = req.headers.get("origin")
        if origin and self._cors and ("*" in self._cors or origin in self._cors):
            base += [
                ("access-control-allow-origin", origin),
                ("vary", "origin"),
                ("access-control-expose-headers", "*"),
            ]
            if req.method == "OPTIONS" and "access-control-request-method" in req.headers:
                verbs = self.router.allowed_verbs(req.path) or ["GET", "POST"]
                preflight = [
                    ("access-control-allow-methods", ", ".join(sorted(set(verbs) | {"OPTIONS"}))),
                    ("access-control-allow-headers", ", ".join(self.settings.cors_allow_headers)),
                    ("access-control-max-age", str(self.settings.cors_max_age_s)),
                ]
                await send_response(send, 204, base + preflight, b"")
                return True
        if self._console.matches(req.path):
            await self._console.serve(req, send, base)
            return True
        public = self._public.get(req.path) if req.method == "GET" else None
        if public is None:
            return False
        await send_response(send, 200, base + [("content-type", public[0])], public[1])
        return True

    async def _admitted(self, req: Request, send: Send, base: Headers, rid: str) -> None:
        """A request inside the in-flight bound: body, route, errors, disconnects, metrics."""
        task = asyncio.current_task()
        watcher: list[asyncio.Task[None]] = []
        armed: asyncio.TimerHandle | None = None
        started = time.perf_counter()
        status = [499]
        kserve_style = _is_kserve(req.path)

        async def counted(msg: MutableMapping[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            if self._artifacts.matches(req):  # streamed bodies (rest/artifacts.py)
                await self._artifacts.handle(req, counted, base)
                return
            body = await self._body(req)
            # The disconnect watcher (a task) starts only for a request still running after
            # WATCH_AFTER_S: most answers come sooner and cost no task; a client gone earlier is
            # noticed then (its receive() answers http.disconnect at once).
            armed = asyncio.get_running_loop().call_later(
                WATCH_AFTER_S,
                lambda: watcher.append(asyncio.create_task(_watch_disconnect(req.receive, task))),
            )
            handler = self._kserve if kserve_style else self._transcoded
            await handler.handle(req, body, counted, base)
        except ClientGone:
            log.info("http.client_gone", path=req.path)
        except asyncio.CancelledError:
            if not watcher or not watcher[0].done() or task is None:
                raise
            task.uncancel()
            log.info("http.client_gone", path=req.path)
        except GatewayError as err:
            await send_error(counted, err, base, kserve_style)
        except ServiceError as exc:
            await send_error(counted, GatewayError.from_service_error(exc), base, kserve_style)
        except Exception:
            # A bug, never the client's fault: one log line with the stack, and the documented
            # JSON error shape instead of uvicorn's text/plain 500.
            log.exception("http.unhandled", path=req.path)
            if status[0] == 499:
                internal = GatewayError(grpc.StatusCode.INTERNAL, "internal error")
                await send_error(counted, internal, base, kserve_style)
        finally:
            if armed is not None:
                armed.cancel()
            for w in watcher:
                w.cancel()
            elapsed = time.perf_counter() - started
            key = (req.route_label, status[0], req.tenant)
            children = self._metrics.get(key)
            if children is None:
                if len(self._metrics) >= 10_000:
                    self._metrics.clear()
                code = str(status[0])
                children = self._metrics[key] = (
                    HTTP_SECONDS.labels(req.route_label, code),
                    REQUESTS.labels(req.route_label, code, tenant_label(req.tenant)),
                )
            children[0].observe(elapsed)
            children[1].inc()
            self._access(req, status[0], elapsed, rid)

    async def _body(self, req: Request) -> bytes:
        try:
            async with asyncio.timeout(self.settings.body_read_timeout_s):
                return await req.body(self.settings.max_body_bytes)
        except TimeoutError:
            raise GatewayError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request body not received within {self.settings.body_read_timeout_s:g} s",
                [("connection", "close")],
                http_override=408,
            ) from None

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


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return
