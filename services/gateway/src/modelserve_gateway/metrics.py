"""The gateway's request, authentication and rate-limit metrics (shed requests, in-flight and
breakers are in protection.py, limiter errors in ratelimit.py, latency by route in rest/asgi.py;
upstream latency is grpc_client_handling_seconds from modelserve_common.metrics).

Labels are bounded: ``route`` is a route template or gRPC method of our contracts ("unmatched"
otherwise), ``tenant`` the authenticated caller's tenant ("-" when none: a trusted caller or a
request refused before authentication), ``reason`` one of AUTH_REASONS.

``modelserve_gateway_requests_total`` counts both doors: REST requests by route template and HTTP
status, and gRPC front-door calls (:func:`counted`) by full method ("/inference.GRPCInferenceService
/ModelInfer"; only methods of the fronted services get a handler, so the set is fixed) and the HTTP
status of the call's gRPC code in the gateway's one gRPC -> HTTP table (errors.HTTP_STATUS: OK 200,
NOT_FOUND 404, UNAVAILABLE 503, ...), so one error-ratio query covers both doors; the gRPC code
itself is in grpc_server_handled_total (by method, no tenant)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import grpc
from prometheus_client import Counter

from modelserve_common.errors import ServiceError
from modelserve_common.handlers import arity, behaviour, replace_behaviour
from modelserve_gateway.errors import http_status
from modelserve_gateway.ratelimit import LIMITER_ERRORS

REQUESTS = Counter(
    "modelserve_gateway_requests_total",
    "Requests by route (REST route template or gRPC method), HTTP status (a gRPC call's code mapped "
    "to the HTTP status REST answers for it) and authenticated tenant.",
    ["route", "code", "tenant"],
)
AUTH_FAILURES = Counter(
    "modelserve_gateway_auth_failures_total",
    "Requests refused by authentication or scope checks, by reason.",
    ["reason"],
)
RATE_LIMIT_DECISIONS = Counter(
    "modelserve_gateway_rate_limit_decisions_total",
    "Rate-limit checks by scope (key, tenant, ...) and decision (allowed, limited, unavailable).",
    ["scope", "decision"],
)

# message prefix of an Unauthenticated error (auth.py) -> reason label
_PREFIXES = (
    ("credentials required", "missing_credentials"),
    ("Authorization must be", "malformed_header"),
    ("invalid API key", "invalid_api_key"),
    ("JWT authentication is not configured", "jwt_not_configured"),
    ("invalid token", "invalid_jwt"),
    ("token from the platform-admin issuer", "jwt_claims"),
    ("token has no", "jwt_claims"),
)
AUTH_REASONS = (*dict.fromkeys(r for _, r in _PREFIXES), "insufficient_scope", "other")
for _reason in AUTH_REASONS:
    AUTH_FAILURES.labels(_reason)


def auth_failure_reason(message: str) -> str:
    """The bounded reason label for an authentication failure's message."""
    for prefix, reason in _PREFIXES:
        if message.startswith(prefix):
            return reason
    return "other"


def tenant_label(tenant: str) -> str:
    return tenant or "-"


for _mode in ("open", "closed"):  # every series from start-up, so alerts and panels find the names
    LIMITER_ERRORS.labels(_mode)


GRPC_TENANT: ContextVar[str] = ContextVar("modelserve_gateway_grpc_tenant", default="")
"""The tenant the front door admitted the current gRPC call as (set by FrontDoor._admit; "" until
then or for a trusted caller)."""


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN


def counted(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` (a front-door method) counting each call in ``modelserve_gateway_requests_total``
    {route=method, code=HTTP status of its gRPC code, tenant} when it ends."""
    serve = behaviour(handler)
    children: dict[tuple[grpc.StatusCode, str], Any] = {}

    def count(code: grpc.StatusCode | None, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if code is None:
            set_code = context.code()
            code = set_code if isinstance(set_code, grpc.StatusCode) else grpc.StatusCode.OK
        key = (code, GRPC_TENANT.get())
        child = children.get(key)
        if child is None:
            child = children[key] = REQUESTS.labels(method, str(http_status(code)), tenant_label(key[1]))
        child.inc()

    if arity(handler)[1]:

        async def streamed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            GRPC_TENANT.set("")
            code = None
            try:
                async for item in serve(request, context):  # the front door's are async generators
                    yield item
            except BaseException as exc:
                code = _code_of(exc, context)
                raise
            finally:
                count(code, context)

        return replace_behaviour(handler, streamed)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        GRPC_TENANT.set("")
        code = None
        try:
            return await serve(request, context)  # the front door's behaviours are coroutines
        except BaseException as exc:
            code = _code_of(exc, context)
            raise
        finally:
            count(code, context)

    return replace_behaviour(handler, unary)
