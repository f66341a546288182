"""THE server chain. Build it with :func:`server_chain` (the server does); never append ad hoc.

Order (first is outermost):

1. Tracing (tracing.py; only when a tracer provider is given): a SERVER span per RPC continuing
   the caller's W3C ``traceparent``, so the span covers everything below and log lines and the
   ``x-trace-id`` trailer carry its ids. Health and reflection are not traced.
2. Observability (observability.py): request context (``x-request-id`` read or generated, bound
   to log context, echoed in trailing metadata), one access-log line per RPC with the final code
   and duration, the standard ``grpc_server_*`` metrics, and error mapping (ServiceError -> its
   status; anything else -> logged once with its stack, INTERNAL "internal error").
3. Handler wrappers a service passes (``(full_method, handler) -> handler``, e.g. the model
   server's ownership guard and Triton router, or authentication), inside the error mapping so
   their ServiceErrors become statuses, around the registered handlers.
4. The malformed-request guard (malformed.py), innermost of all: a request whose bytes do not
   parse answers INVALID_ARGUMENT "malformed request message: ..." through the error mapping
   (grpc's own answer would be UNKNOWN "Unexpected <class 'DecodeError'>").

Everything is a handler wrapper, applied to each method handler once, when services are
registered, rather than a grpc.aio interceptor (tracing included: OpenTelemetry's aio server
interceptor cost the model server a third of its throughput at a 1 % sampling ratio): every interceptor costs
grpc.aio a coroutine chain and a handler lookup per RPC, and the model server's throughput target
leaves no room for that. Request context, access log, metrics and error mapping are one wrapper
rather than four. Wrappers build their handlers with :mod:`modelserve_common.handlers` (arity,
behaviour, cache).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings
from modelserve_common.interceptors.observability import AccessLog, wrap_handler
from modelserve_common.interceptors.tracing import traced_handler
from modelserve_common.malformed import guard_request_deserializer

UNTRACED_PREFIXES = ("grpc.health.", "grpc.reflection.")

# A string: grpc.RpcMethodHandler is generic only in grpc-stubs, not subscriptable at run time.
HandlerWrapper: TypeAlias = (
    "Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]"
)
"""Takes a full method name (``/package.Service/Method``) and its handler; returns the handler to
serve instead (the same one to leave the method alone)."""


@dataclass(frozen=True)
class ServerChain:
    """The chain, split into what grpc.aio runs per RPC and what is applied at registration."""

    interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]
    """For ``grpc.aio.server(interceptors=...)``; empty (kept for a future per-RPC need)."""
    wrap: HandlerWrapper
    """Applied once to every method handler when it is registered."""


def server_chain(
    settings: BaseServiceSettings,
    tracer_provider: TracerProvider | None = None,
    wrappers: Sequence[HandlerWrapper] = (),
    errors_only: Collection[str] = (),
) -> ServerChain:
    """The ordered server chain (see module docstring). The access log records only the failed
    calls of the methods in ``errors_only`` (full names, e.g. a server's inference RPCs, whose
    successes its metrics and statistics count)."""
    access_log = AccessLog(structured_only=tracer_provider is not None) if settings.access_log else None
    chain: list[grpc.aio.ServerInterceptor[Any, Any]] = []
    tracer = tracer_provider.get_tracer("modelserve.grpc.server") if tracer_provider is not None else None
    inner = tuple(reversed(wrappers))

    def wrap(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        handler = guard_request_deserializer(method, handler)
        for w in inner:
            handler = w(method, handler)
        handler = wrap_handler(method, handler, access_log, log_ok=method not in errors_only)
        if tracer is None or method.lstrip("/").startswith(UNTRACED_PREFIXES):
            return handler
        return traced_handler(method, handler, tracer)

    return ServerChain(chain, wrap)


__all__ = ["HandlerWrapper", "ServerChain", "UNTRACED_PREFIXES", "server_chain"]
