"""THE server interceptor chain. Build it with :func:`server_interceptors`; never append ad hoc.

Order (first is outermost):

1. OpenTelemetry server interceptor (only when a tracer provider is given), so the span covers
   everything below and log lines carry trace_id/span_id. Health and reflection are filtered out.
2. :class:`ObservabilityInterceptor`: request context (``x-request-id`` read or generated, bound to
   log context, echoed in trailing metadata), one access-log line per RPC with the final code and
   duration, the standard ``grpc_server_*`` metrics, and error mapping (ServiceError -> its status;
   anything else -> logged once with its stack, INTERNAL "internal error").
3. Extra interceptors a service passes (e.g. authentication), inside the error mapping so their
   ServiceErrors become statuses.

Request context, access log, metrics and error mapping are one interceptor rather than four: each
grpc.aio interceptor layer costs a coroutine hop and a handler rewrap per RPC, and the model server's
throughput target leaves no room for four. They stay separate functions inside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings
from modelserve_common.interceptors.observability import ObservabilityInterceptor

UNTRACED_PREFIXES = ("grpc.health.", "grpc.reflection.")


def server_interceptors(
    settings: BaseServiceSettings,
    tracer_provider: TracerProvider | None = None,
    extra: Sequence[grpc.aio.ServerInterceptor] = (),
) -> list[grpc.aio.ServerInterceptor]:
    """The ordered server chain (see module docstring)."""
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
    chain.append(ObservabilityInterceptor(access_log=settings.access_log))
    chain.extend(extra)
    return chain
