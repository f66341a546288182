"""Channels to the fronted services, one per upstream, built with modelserve_common.channels, and
the one way both doors call them (:class:`Upstream`: deadline, metadata, circuit breaker).

Unary raw calls (the data path of both doors) go over a second channel to the same target with
the same options and credentials but no client interceptors when tracing is off: a grpc.aio
client interceptor costs every call a task and two coroutines (the gRPC front door spent about a
sixth of its CPU there). What the interceptors did is done inline on that path: ``x-request-id``
from the request context, the caller's deadline (the doors always pass one, the upstream default
otherwise), and ``grpc_client_handled_total`` / ``grpc_client_handling_seconds``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.channels import channel_options, create_channel
from modelserve_common.config import BaseServiceSettings
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.metrics import GRPC_CLIENT_HANDLED, GRPC_CLIENT_HANDLING_SECONDS
from modelserve_common.tls import channel_credentials
from modelserve_gateway.protection import CircuitBreaker
from modelserve_gateway.settings import GatewaySettings

REGISTRY, MODEL_SERVER, ORCHESTRATOR = "registry", "model_server", "orchestrator"

INFERENCE_SERVICE = inference_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
REGISTRY_SERVICE = registry_pb.DESCRIPTOR.services_by_name["RegistryService"]
ORCHESTRATOR_SERVICE = orchestrator_pb.DESCRIPTOR.services_by_name["OrchestratorService"]

FRONTED: list[tuple[ServiceDescriptor, str]] = [
    (REGISTRY_SERVICE, REGISTRY),
    (ORCHESTRATOR_SERVICE, ORCHESTRATOR),
    (INFERENCE_SERVICE, MODEL_SERVER),
]

# Idempotent methods: retried on UNAVAILABLE by the channel (never writes).
_IDEMPOTENT_PREFIXES = ("Get", "List", "Server", "Model", "Verify", "Repository")


def idempotent_methods(service: ServiceDescriptor) -> list[str]:
    return [
        f"{service.full_name}/{m.name}"
        for m in service.methods
        if m.name.startswith(_IDEMPOTENT_PREFIXES)
        and not m.client_streaming
        and not m.server_streaming
        and m.name not in ("ModelInfer", "RepositoryModelLoad", "RepositoryModelUnload")
    ]


def _identity(x: bytes) -> bytes:
    return x


def direct_channel(
    target: str, settings: BaseServiceSettings, retry_methods: list[str], own_connection: bool = False
) -> grpc.aio.Channel:
    """A channel like ``create_channel``'s (same options, retries and credentials) without client
    interceptors, for :meth:`Upstream.call_unary`, which does their work inline. ``own_connection``:
    a connection of its own (grpc otherwise shares one between channels with the same options)."""
    options = channel_options(settings, retry_methods)
    if own_connection:
        options = [*options, ("grpc.use_local_subchannel_pool", 1)]
    creds = channel_credentials(settings)
    if creds is not None:
        return grpc.aio.secure_channel(target, creds, options=options)
    return grpc.aio.insecure_channel(target, options=options)


class _ClientMetrics:
    """The client metrics of one upstream's unary calls, label children bound once."""

    def __init__(self) -> None:
        self._handled: dict[tuple[str, str], Any] = {}
        self._seconds: dict[str, Any] = {}

    def record(self, method: str, code: str, seconds: float) -> None:
        key = (method, code)
        child = self._handled.get(key)
        service, _, name = method.lstrip("/").partition("/")
        if child is None:
            child = self._handled[key] = GRPC_CLIENT_HANDLED.labels(service, name, code)
        child.inc()
        hist = self._seconds.get(service)
        if hist is None:
            hist = self._seconds[service] = GRPC_CLIENT_HANDLING_SECONDS.labels(service)
        hist.observe(seconds)


@dataclass(frozen=True)
class Reply:
    """A unary answer: the message bytes and the upstream's initial and trailing metadata."""

    message: bytes
    initial_metadata: Any
    trailing_metadata: Any


class UpstreamStream:
    """A streaming call in flight. Iterating it relays the upstream's messages; the breaker
    records success at the first message (or a clean end) and every gRPC failure; an
    ``AioRpcError`` is re-raised for the door to render."""

    def __init__(self, call: Any, breaker: CircuitBreaker, probe: bool = False) -> None:
        self.call = call
        self._breaker = breaker
        self._probe = probe
        self._recorded = False

    def _ok(self) -> None:
        if not self._recorded:
            self._recorded = True
            self._breaker.record(grpc.StatusCode.OK)

    async def initial_metadata(self) -> Any:
        return await self.call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self.call.trailing_metadata()

    def cancel(self) -> None:
        self.call.cancel()

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        try:
            async for item in self.call:
                self._ok()
                yield item
        except grpc.aio.AioRpcError as exc:
            self._recorded = True
            self._breaker.record(exc.code())
            raise
        finally:
            if not self._recorded:  # cancelled or closed before any outcome
                self._breaker.abandon(self._probe)
        self._ok()


class _InTurn:
    """Multicallables of one method on several channels, used in turn."""

    __slots__ = ("_callables", "_next")

    def __init__(self, callables: list[Any]) -> None:
        self._callables = callables
        self._next = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        i = self._next
        self._next = (i + 1) % len(self._callables)
        return self._callables[i](*args, **kwargs)


@dataclass
class Upstream:
    """One fronted service: its channel, default deadline and circuit breaker; multicallables are
    cached per method (raw bytes in and out, so the front door never decodes)."""

    name: str
    channel: grpc.aio.Channel
    timeout_s: float
    breaker: CircuitBreaker
    _unary: dict[str, Any] = field(default_factory=dict)
    _stream: dict[str, Any] = field(default_factory=dict)
    _bidi: dict[str, Any] = field(default_factory=dict)
    _typed: dict[str, Any] = field(default_factory=dict)
    direct: grpc.aio.Channel | None = None
    """The channel without client interceptors for :meth:`call_unary` (None: ``channel``)."""
    more_direct: tuple[grpc.aio.Channel, ...] = ()
    """More channels like ``direct``, each with its own connection: unary calls go over ``direct``
    and these in turn (``model_server_connections``: one connection per model-server worker)."""
    _metrics: _ClientMetrics = field(default_factory=_ClientMetrics)

    async def call_unary(self, method: str, request: bytes, metadata: Any, deadline_s: float | None) -> Reply:
        """One unary call through the breaker (fails fast while it is open)."""
        probe = self.breaker.before_call()
        if self.direct is None:
            try:
                call = self.unary(method)(request, metadata=metadata, timeout=deadline_s)
                message: bytes = await call
            except grpc.aio.AioRpcError as exc:
                self.breaker.record(exc.code())
                raise
            except BaseException:  # cancelled, or refused here: no outcome of the upstream's
                self.breaker.abandon(probe)
                raise
            self.breaker.record(grpc.StatusCode.OK)
            return Reply(message, await call.initial_metadata(), await call.trailing_metadata())
        rid = request_id_var.get()
        if rid is not None:
            metadata = (*metadata, (REQUEST_ID_HEADER, rid))
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            call = self.unary(method)(
                request, metadata=metadata, timeout=self.timeout_s if deadline_s is None else deadline_s
            )
            message = await call
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self.breaker.record(exc.code())
            raise
        except BaseException as exc:  # cancelled, or refused here: no outcome of the upstream's
            code = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else code
            self.breaker.abandon(probe)
            raise
        finally:
            self._metrics.record(method, code, time.perf_counter() - started)
        self.breaker.record(grpc.StatusCode.OK)
        return Reply(message, await call.initial_metadata(), await call.trailing_metadata())

    async def call_stream_unary(
        self, method: str, requests: AsyncIterator[bytes], metadata: Any, deadline_s: float | None
    ) -> bytes:
        """One client-streaming call through the breaker."""
        probe = self.breaker.before_call()
        try:
            message: bytes = await self.stream_unary(method)(requests, metadata=metadata, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            self.breaker.record(exc.code())
            raise
        except BaseException:
            self.breaker.abandon(probe)
            raise
        self.breaker.record(grpc.StatusCode.OK)
        return message

    def open_stream(
        self, method: str, request: bytes | AsyncIterator[bytes], metadata: Any, deadline_s: float | None
    ) -> UpstreamStream:
        """A server-streaming call (``request`` bytes) or a bidirectional one (an iterator of
        requests), through the breaker."""
        probe = self.breaker.before_call()
        try:
            if isinstance(request, bytes):
                call = self.unary_stream(method)(request, metadata=metadata, timeout=deadline_s)
            else:
                call = self.stream_stream(method)(request, metadata=metadata, timeout=deadline_s)
        except BaseException:
            self.breaker.abandon(probe)
            raise
        return UpstreamStream(call, self.breaker, probe)

    def unary(self, method: str) -> Any:
        mc = self._unary.get(method)
        if mc is None:
            channel = self.channel if self.direct is None else self.direct
            mc = self._unary[method] = channel.unary_unary(method, _identity, _identity)
            if self.direct is not None and self.more_direct:
                channels = (self.direct, *self.more_direct)
                mc = self._unary[method] = _InTurn(
                    [c.unary_unary(method, _identity, _identity) for c in channels]
                )
        return mc

    def unary_stream(self, method: str) -> Any:
        mc = self._stream.get(method)
        if mc is None:
            mc = self._stream[method] = self.channel.unary_stream(method, _identity, _identity)
        return mc

    def stream_unary(self, method: str) -> Any:
        key = "su" + method
        mc = self._bidi.get(key)
        if mc is None:
            mc = self._bidi[key] = self.channel.stream_unary(method, _identity, _identity)
        return mc

    def stream_stream(self, method: str) -> Any:
        mc = self._bidi.get(method)
        if mc is None:
            mc = self._bidi[method] = self.channel.stream_stream(method, _identity, _identity)
        return mc

    def typed_unary(self, method: str, response_parser: Callable[[bytes], Any]) -> Any:
        mc = self._typed.get(method)
        if mc is None:
            mc = self._typed[method] = self.channel.unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_parser,
            )
        return mc

    def typed_stream(self, method: str, response_parser: Callable[[bytes], Any]) -> Any:
        key = "ts" + method
        mc = self._typed.get(key)
        if mc is None:
            mc = self._typed[key] = self.channel.unary_stream(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_parser,
            )
        return mc


class Upstreams:
    """The three fronted services."""

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider | None = None) -> None:
        def make(
            name: str, target: str, service: ServiceDescriptor, timeout: float, connections: int = 1
        ) -> Upstream:
            retry = idempotent_methods(service)
            channel = create_channel(
                target,
                settings,
                retry_methods=retry,
                tracer_provider=tracer_provider,
                default_timeout_s=timeout,
            )
            return Upstream(
                name,
                channel,
                timeout,
                CircuitBreaker(name, settings.breaker_failures, settings.breaker_open_s),
                # traced calls need the tracing interceptor: they keep the one channel
                direct=direct_channel(target, settings, retry, connections > 1)
                if tracer_provider is None
                else None,
                more_direct=tuple(
                    direct_channel(target, settings, retry, own_connection=True)
                    for _ in range(connections - 1 if tracer_provider is None else 0)
                ),
            )

        self.by_name: dict[str, Upstream] = {
            REGISTRY: make(REGISTRY, settings.registry_url, REGISTRY_SERVICE, settings.registry_timeout_s),
            MODEL_SERVER: make(
                MODEL_SERVER,
                settings.model_server_url,
                INFERENCE_SERVICE,
                settings.model_server_timeout_s,
                settings.model_server_connections,
            ),
            ORCHESTRATOR: make(
                ORCHESTRATOR, settings.orchestrator_url, ORCHESTRATOR_SERVICE, settings.orchestrator_timeout_s
            ),
        }
        self.by_service: dict[str, Upstream] = {svc.full_name: self.by_name[name] for svc, name in FRONTED}

    def add(self, service: ServiceDescriptor, target: str, settings: GatewaySettings) -> None:
        """Fronts one more service (its upstream is named after the service)."""
        channel = create_channel(target, settings, default_timeout_s=settings.client_timeout_s)
        up = Upstream(
            service.full_name,
            channel,
            settings.client_timeout_s,
            CircuitBreaker(service.full_name, settings.breaker_failures, settings.breaker_open_s),
        )
        self.by_name[service.full_name] = up
        self.by_service[service.full_name] = up

    def __getitem__(self, name: str) -> Upstream:
        return self.by_name[name]

    async def close(self) -> None:
        for up in self.by_name.values():
            await up.channel.close(None)
            if up.direct is not None:
                await up.direct.close(None)
            for channel in up.more_direct:
                await channel.close(None)
