"""Routes compiled from the fronted services' google.api.http options: match, admit, build the
request message, call upstream (unary, or a stream rendered by ``streaming``), answer JSON."""

from __future__ import annotations

import grpc

from modelserve_gateway import metadata
from modelserve_gateway.audit import audited
from modelserve_gateway.clients import Upstreams
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.guard import Guard
from modelserve_gateway.rest import streaming
from modelserve_gateway.rest.http import JSON, Headers, Request, Send, call_unary, send_response
from modelserve_gateway.scopes import is_write
from modelserve_gateway.settings import GatewaySettings
from modelserve_gateway.transcoding.codec import build_request, response_json
from modelserve_gateway.transcoding.routes import Route, Router
from modelserve_gateway.transcoding.safe_json import dumps


class TranscodedRoutes:
    def __init__(self, settings: GatewaySettings, router: Router, upstreams: Upstreams, guard: Guard) -> None:
        self.settings = settings
        self.router = router
        self.upstreams = upstreams
        self.guard = guard

    def match(self, req: Request) -> tuple[Route, dict[str, str]]:
        found = self.router.match(req.method, req.path)
        if found is not None:
            return found
        verbs = self.router.allowed_verbs(req.path)
        if verbs:
            raise GatewayError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{req.method} is not allowed on {req.path}; allowed: {', '.join(verbs)}",
                [("allow", ", ".join(verbs))],
                http_override=405,
            )
        raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {req.method} {req.path}")

    async def handle(self, req: Request, body: bytes, send: Send, base: Headers) -> None:
        route, path_vars = self.match(req)
        req.route_label = route.method
        req.template = f"{route.verb} {route.template.source}"
        adm = await self.guard.admit(route.method, req.credentials())
        req.tenant = adm.principal.tenant or ""
        base = base + adm.headers
        msg = build_request(
            route,
            path_vars,
            req.query,
            body,
            max_depth=self.settings.max_json_depth,
            max_page_size=self.settings.max_page_size,
        )
        upstream = self.upstreams[route.upstream]
        resource = ",".join(f"{k}={v}" for k, v in path_vars.items())
        try:
            with audited(adm.principal, route.method, resource, enabled=is_write(route.method)):
                if route.server_streaming:
                    md = metadata.from_http(req.headers, adm)
                    deadline = req.deadline(self.settings, upstream, streaming=True)
                    accept = req.headers.get("accept", "")
                    await streaming.stream(
                        send, route, upstream, msg.SerializeToString(), md, deadline, base, accept
                    )
                    return
                raw, md_headers = await call_unary(
                    self.settings, req, adm, upstream, route.method, msg.SerializeToString()
                )
        except GatewayError as err:
            err.headers = adm.headers + err.headers
            raise
        reply = route.response_type.FromString(raw)
        await send_response(
            send, 200, base + md_headers + [("content-type", JSON)], dumps(response_json(route, reply))
        )
