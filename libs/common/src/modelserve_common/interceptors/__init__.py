"""THE server chain. Build it with :func:`server_chain` (the server does); never append ad hoc.

Order (first is outermost):

1. OpenTelemetry server interceptor (only when a tracer provider is given), so the span covers
   everything below and log lines carry trace_id/span_id. Health and reflection are filtered out.
2. Observability (observability.py): request context (``x-request-id`` read or generated, bound
   to log context, echoed in trailing metadata), one access-log line per RPC with the final code
   and duration, the standard ``grpc_server_*`` metrics, and error mapping (ServiceError -> its
   status; anything else -> logged once with its stack, INTERNAL "internal error").
3. Extra grpc.aio interceptors a service passes (e.g. authentication), inside the error mapping so
   their ServiceErrors become statuses.
4. Handler wrappers a service passes (``(full_method, handler) -> handler``, e.g. the model
   server's Triton router), innermost, around the registered handlers.
5. The malformed-request guard (malformed.py), innermost of all: a request whose bytes do not
   parse answers INVALID_ARGUMENT "malformed request message: ..." through the error mapping
   (grpc's own answer would be UNKNOWN "Unexpected <class 'DecodeError'>").

Request context, access log, metrics and error mapping are one wrapper rather than four, and it is
applied to each method handler once, when services are registered, instead of by a grpc.aio
interceptor: every interceptor costs grpc.aio a coroutine chain and a handler lookup per RPC, and
the model server's throughput target leaves no room for that. Only when a service passes grpc-level
interceptors (3) does observability run as an interceptor, so that it stays outside them. Handler
wrappers (4) cost nothing per RPC beyond their own work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings
from modelserve_common.interceptors.observability import AccessLog, ObservabilityInterceptor, wrap_handler
from modelserve_common.malformed import guard_request_deserializer

UNTRACED_PREFIXES = ("grpc.health.", "grpc.reflection.")

HandlerWrapper = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]
"""Takes a full method name (``/package.Service/Method``) and its handler; returns the handler to
serve instead (the same one to leave the method alone)."""


@dataclass(frozen=True)
class ServerChain:
    """The chain, split into what grpc.aio runs per RPC and what is applied at registration."""

    interceptors: list[grpc.aio.ServerInterceptor]
    """For ``grpc.aio.server(interceptors=...)``; empty unless tracing is on or extras are given."""
    wrap: HandlerWrapper
    """Applied once to every method handler when it is registered."""


def server_chain(
    settings: BaseServiceSettings,
    tracer_provider: TracerProvider | None = None,
    extra: Sequence[grpc.aio.ServerInterceptor] = (),
    wrappers: Sequence[HandlerWrapper] = (),
) -> ServerChain:
    """The ordered server chain (see module docstring)."""
    access_log = AccessLog(structured_only=tracer_provider is not None) if settings.access_log else None
    chain: list[grpc.aio.ServerInterceptor] = []
    if tracer_provider is not None:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        chain.append(
            aio_server_interceptor(
                tracer_provider=tracer_provider,
                filter_=filters.negate(
                    filters.any_of(*(filters.service_prefix(p) for p in UNTRACED_PREFIXES))
                ),
            )
        )
    inner = tuple(reversed(wrappers))
    if extra:
        chain.append(ObservabilityInterceptor(access_log))
        chain.extend(extra)

        def wrap_inner(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
            handler = guard_request_deserializer(method, handler)
            for w in inner:
                handler = w(method, handler)
            return handler

        return ServerChain(chain, wrap_inner)

    def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        handler = guard_request_deserializer(method, handler)
        for w in inner:
            handler = w(method, handler)
        return wrap_handler(method, handler, access_log)

    return ServerChain(chain, wrap)


def server_interceptors(
    settings: BaseServiceSettings,
    tracer_provider: TracerProvider | None = None,
    extra: Sequence[grpc.aio.ServerInterceptor] = (),
) -> list[grpc.aio.ServerInterceptor]:
    """The whole chain as grpc.aio interceptors, for a server whose handlers are not registered
    through :func:`modelserve_common.server.grpc_server` (which uses :func:`server_chain`)."""
    access_log = AccessLog(structured_only=tracer_provider is not None) if settings.access_log else None
    chain = server_chain(settings, tracer_provider, ()).interceptors
    return [*chain, ObservabilityInterceptor(access_log), *extra]


__all__ = ["HandlerWrapper", "ServerChain", "server_chain", "server_interceptors", "UNTRACED_PREFIXES"]
