"""KServe v2 REST on top of inference.GRPCInferenceService, with ``{"error": ...}`` bodies. The
routes are declared once, in ``kserve_routes.KSERVE_ROUTES``; this module matches them and runs
one: admit, check the model (ownership, per-model limit, canary), build the request, call the
model server, render the answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf.message import Message

from modelserve_gateway.audit import audited
from modelserve_gateway.clients import Upstream
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.guard import Guard
from modelserve_gateway.rest.http import Headers, Request, Send, call_unary, send_response
from modelserve_gateway.rest.kserve_routes import (
    KSERVE_ROUTES,
    SERVICE,
    KServeCall,
    KServeRoute,
    response_type,
)
from modelserve_gateway.scopes import is_write
from modelserve_gateway.settings import GatewaySettings


def match(method: str, path: str) -> tuple[KServeRoute, dict[str, str]]:
    """The route for ``path`` and its (unquoted) variables; 405 when the path is known under
    another verb, 404 when it is not known."""
    for route in KSERVE_ROUTES:
        m = route.pattern.match(path)
        if m is None:
            continue
        if route.verb != method:
            raise GatewayError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method} is not allowed on {path}",
                [("allow", route.verb)],
                http_override=405,
            )
        return route, {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
    raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {method} {path}")


class KServeRoutes:
    def __init__(self, settings: GatewaySettings, upstream: Upstream, guard: Guard) -> None:
        self.settings = settings
        self.upstream = upstream
        self.guard = guard

    async def handle(self, req: Request, body: bytes, send: Send, base: Headers) -> None:
        route, groups = match(req.method, req.path)
        req.route_label = "kserve." + route.name
        req.template = f"{route.verb} {route.path}"
        adm = await self.guard.admit(route.method, req.credentials())
        req.tenant = adm.principal.tenant or ""
        base = base + adm.headers
        model, version = groups.get("model", ""), groups.get("version", "")

        async def unary(rpc: str, msg: Message) -> Any:
            method = f"/{SERVICE.full_name}/{rpc}"
            raw, _ = await call_unary(self.settings, req, adm, self.upstream, method, msg.SerializeToString())
            return response_type(rpc).FromString(raw)

        call = KServeCall(req, adm, body, model, version, version, self.settings, self.guard, unary)
        if route.names_model:
            key = req.headers.get(self.settings.route_key_header) if route.name == "infer" else None
            routed = await self.guard.route_model(adm, model, version, key)
            base = base + routed.headers
            if route.name == "infer":  # metadata and readiness: no canary draw
                call.routed_version = routed.version
        request = await route.build(call)
        resp: Any = None
        with audited(adm.principal, route.method, model, enabled=is_write(route.method)):
            try:
                resp = await unary(route.rpc, request)
            except GatewayError:
                if not route.tolerate_failure:
                    raise
        reply = await route.render(call, resp)
        await send_response(send, reply.status, base + reply.headers, reply.body)
