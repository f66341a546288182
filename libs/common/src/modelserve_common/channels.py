"""The channel factory: every call from one service to another goes through a channel built here.

It sets a default deadline when the caller gives none, propagates ``x-request-id`` (and the trace
context when tracing is on), retries only the named idempotent methods and only on UNAVAILABLE,
keeps connections alive, bounds message sizes, and uses TLS when ``tls_ca_file`` is configured."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve_common.config import BaseServiceSettings
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.metrics import ClientMetricsInterceptor
from modelserve_common.tls import channel_credentials
from modelserve_common.tracing import client_interceptors


def _details(details: grpc.aio.ClientCallDetails, default_timeout: float) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    rid = request_id_var.get()
    if rid is not None and not any(k == REQUEST_ID_HEADER for k, _ in metadata):
        metadata.append((REQUEST_ID_HEADER, rid))
    timeout = details.timeout if details.timeout is not None else default_timeout
    return grpc.aio.ClientCallDetails(
        details.method, timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
    )


class _ContextClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]  # generic only in grpc-stubs
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]  # generic only in grpc-stubs
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[type-arg]  # generic only in grpc-stubs
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[type-arg]  # generic only in grpc-stubs
):
    def __init__(self, default_timeout: float) -> None:
        self._timeout = default_timeout

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details, self._timeout), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details, self._timeout), request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_details(details, self._timeout), request_iterator)

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_details(details, self._timeout), request_iterator)


def retry_service_config(methods: Sequence[str], max_attempts: int = 4) -> str:
    """A gRPC service config retrying ``methods`` ("pkg.Service/Method" or "pkg.Service") on
    UNAVAILABLE only, with exponential backoff."""
    names = []
    for m in methods:
        service, _, method = m.partition("/")
        names.append({"service": service, "method": method} if method else {"service": service})
    if not names:
        return json.dumps({"methodConfig": []})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": names,
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def channel_options(
    settings: BaseServiceSettings, retry_methods: Sequence[str] = ()
) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(retry_methods)),
    ]


def create_channel(
    target: str,
    settings: BaseServiceSettings,
    *,
    retry_methods: Sequence[str] = (),
    tracer_provider: TracerProvider | None = None,
    default_timeout_s: float | None = None,
    extra_options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An aio channel to ``target`` with the behaviour described in the module docstring."""
    interceptors: list[Any] = [
        _ContextClientInterceptor(default_timeout_s or settings.client_timeout_s),
        ClientMetricsInterceptor(),
    ]
    if tracer_provider is not None:
        interceptors = [*client_interceptors(tracer_provider), *interceptors]
    options = [*channel_options(settings, retry_methods), *extra_options]
    creds = channel_credentials(settings)
    if creds is not None:
        return grpc.aio.secure_channel(target, creds, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
