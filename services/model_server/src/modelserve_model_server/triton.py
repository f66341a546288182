"""The Triton backend: the only module that talks to NVIDIA Triton.

Hot path: a Triton-served model's ModelInfer request is never decoded. The router reads only the
routing fields of the serialized ModelInferRequest (model_name=1, model_version=2, id=3) with a
tiny wire-format scan, and forwards the bytes with a bytes-in/bytes-out multicallable; Triton's
reply comes back as bytes the same way. ModelStreamInfer is forwarded as a stream (routed by its
first request). Our own stubs' wire protocol is Triton's; ``tritonclient.grpc`` is never imported
(its protos clash with ours in protobuf's default pool).

Resilience: every replica named in ``triton_url`` gets ``triton_channels_per_endpoint`` HTTP/2
connections; calls go to the replica with the fewest outstanding requests; a replica whose health
probe fails, or that answers UNAVAILABLE and then fails a probe, is ejected (circuit breaker, with
exponential backoff) and probed back in. With no replica left a call fails UNAVAILABLE at once,
never hangs. Deadlines are the incoming call's remaining time, clamped; a cancelled client call
cancels the Triton call (grpc.aio cancels an awaited call when its task is cancelled).

Lifecycle: every model in Triton's repository index is served under its own name (unless
``triton_models`` narrows it), a local model of the same name wins; metadata, config, readiness and
statistics of Triton models come from Triton; RepositoryModelLoad/Unload of a Triton model goes to
every replica (load parameters, which could upload files or override configs, are refused).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ServiceError,
    Unavailable,
    all_error_classes,
)
from modelserve_common.malformed import MalformedRequest
from modelserve_common.tls import channel_credentials
from modelserve_model_server.settings import ModelServerSettings

log = structlog.get_logger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
MODEL_INFER = SERVICE + "ModelInfer"
MODEL_STREAM_INFER = SERVICE + "ModelStreamInfer"
SERVER_READY = SERVICE + "ServerReady"
MODEL_READY = SERVICE + "ModelReady"
MODEL_METADATA = SERVICE + "ModelMetadata"
MODEL_CONFIG = SERVICE + "ModelConfig"
MODEL_STATISTICS = SERVICE + "ModelStatistics"
REPOSITORY_INDEX = SERVICE + "RepositoryIndex"
REPOSITORY_MODEL_LOAD = SERVICE + "RepositoryModelLoad"
REPOSITORY_MODEL_UNLOAD = SERVICE + "RepositoryModelUnload"

_SERVER_READY_TRUE = pb.ServerReadyResponse(ready=True).SerializeToString()


# --------------------------------------------------------------------------- wire-format routing


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def scan_fields(data: bytes, numbers: Collection[int]) -> dict[int, bytes]:
    """The top-level length-delimited fields ``numbers`` of a serialized message, without decoding
    the rest: other length-delimited fields (tensors, raw contents) are skipped by their length,
    never copied. The last occurrence wins, as in protobuf. Raises InvalidArgument on malformed
    bytes."""
    found: dict[int, bytes] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ValueError("field number 0")
            if wire == 2:
                length, pos = _varint(data, pos, end)
                stop = pos + length
                if stop > end:
                    raise ValueError("truncated length-delimited field")
                if number in numbers:
                    found[number] = data[pos:stop]
                pos = stop
            elif wire == 0:
                _, pos = _varint(data, pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
        if pos != end:
            raise ValueError("truncated fixed-width field")
    except ValueError as exc:
        raise InvalidArgument(f"malformed request message: {exc}") from None
    return found


def scan_string_fields(data: bytes, numbers: Collection[int]) -> dict[int, str]:
    """Like :func:`scan_fields`, decoded as UTF-8 strings."""
    try:
        return {k: v.decode("utf-8") for k, v in scan_fields(data, numbers).items()}
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"malformed request message: {exc}") from None


@dataclass(frozen=True)
class Routing:
    """The routing fields of a ModelInferRequest."""

    model_name: str
    model_version: str
    id: str


def infer_routing(data: bytes) -> Routing:
    """model_name=1, model_version=2, id=3 of a serialized ModelInferRequest."""
    f = scan_string_fields(data, (1, 2, 3))
    return Routing(f.get(1, ""), f.get(2, ""), f.get(3, ""))


# --------------------------------------------------------------------------- errors


class _Unknown(ServiceError):
    code = grpc.StatusCode.UNKNOWN


class _DataLoss(ServiceError):
    code = grpc.StatusCode.DATA_LOSS


_ERROR_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    **{cls.code: cls for cls in all_error_classes()},
    grpc.StatusCode.UNKNOWN: _Unknown,
    grpc.StatusCode.DATA_LOSS: _DataLoss,
}


def triton_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    """Triton's status passed through: same code, Triton's own message."""
    code = exc.code()
    return _ERROR_BY_CODE.get(code, Internal)(exc.details() or code.name)


# --------------------------------------------------------------------------- replicas


def _channel_options(settings: ModelServerSettings, index: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Our own retry/ejection logic applies; the channel's would buffer every request for replay.
        ("grpc.enable_retries", 0),
        # Reconnect quickly after Triton restarts (defaults back off up to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # One TCP connection per channel: channels with equal args otherwise share a subchannel.
        ("grpc.use_local_subchannel_pool", 1),
        ("modelserve.triton_channel", index),
    ]


@dataclass(eq=False)
class Replica:
    """One Triton endpoint: its channels, load and circuit-breaker state."""

    target: str
    channels: list[grpc.aio.Channel]
    outstanding: int = 0
    ejected: bool = False
    ejected_until: float = 0.0
    failures: int = 0
    ready: bool = False
    models: dict[str, str] = field(default_factory=dict)
    _rr: itertools.count[int] = field(default_factory=itertools.count)
    _unary: dict[str, list[grpc.aio.UnaryUnaryMultiCallable]] = field(default_factory=dict)
    _probe: asyncio.Task[bool] | None = None

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        calls = self._unary.get(method)
        if calls is None:
            calls = [
                ch.unary_unary(method, request_serializer=None, response_deserializer=None)
                for ch in self.channels
            ]
            self._unary[method] = calls
        return calls[next(self._rr) % len(calls)]

    def stream(self, method: str) -> grpc.aio.StreamStreamMultiCallable:
        channel = self.channels[next(self._rr) % len(self.channels)]
        return channel.stream_stream(method, request_serializer=None, response_deserializer=None)


ReadinessCallback = Callable[[bool], Awaitable[None]]


class TritonBackend:
    """Forwards KServe v2 calls for Triton-served models to a set of Triton replicas."""

    def __init__(
        self,
        settings: ModelServerSettings,
        *,
        local_models: Callable[[], Collection[str]] = frozenset,
        on_readiness: ReadinessCallback | None = None,
    ) -> None:
        targets = [t.strip() for t in settings.triton_url.split(",") if t.strip()]
        if not targets:
            raise ValueError("triton_url names no endpoint")
        self._settings = settings
        self._local_models = local_models
        self.on_readiness = on_readiness
        self._configured = frozenset(m.strip() for m in settings.triton_models.split(",") if m.strip())
        creds = channel_credentials(settings)
        self.replicas: list[Replica] = []
        for target in targets:
            channels = []
            for i in range(settings.triton_channels_per_endpoint):
                opts = _channel_options(settings, i)
                channels.append(
                    grpc.aio.secure_channel(target, creds, options=opts)
                    if creds is not None
                    else grpc.aio.insecure_channel(target, options=opts)
                )
            self.replicas.append(Replica(target=target, channels=channels))
        self._names: frozenset[str] = frozenset()
        self._shadowed_logged: set[str] = set()
        self._ready = False
        self._rotate = itertools.count()
        self._monitor: asyncio.Task[None] | None = None
        self._next_index = 0.0
        self.ejections = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        """Final status of forwarded unary calls and streams by code name (CANCELLED = by our caller)."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Probes every replica once, reads the index, then keeps probing in the background."""
        await self._tick()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="triton-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        for replica in self.replicas:
            for channel in replica.channels:
                await channel.close(None)

    @property
    def ready(self) -> bool:
        """A replica is ready and so is every model the settings require."""
        return self._ready

    def serves(self, name: str) -> bool:
        """Whether ``name`` is served through Triton (a local model of the same name wins)."""
        if self._configured:
            if name not in self._configured:
                return False
        elif name not in self._names:
            return False
        return name not in self._local_models()

    def index_names(self) -> frozenset[str]:
        """Models in Triton's repository index (every replica's, last refresh)."""
        return self._names | self._configured

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.triton_probe_interval_s)
            try:
                await self._tick()
            except Exception:  # never let the monitor die
                log.exception("triton.monitor_failed")

    async def _tick(self) -> None:
        await asyncio.gather(*(self._probe(r) for r in self.replicas))
        if time.monotonic() >= self._next_index:
            await self.refresh_index()
        await self._update_readiness()

    async def _probe(self, replica: Replica) -> None:
        ok = await self._check(replica)
        now = time.monotonic()
        if ok:
            replica.ready = True
            if replica.ejected and now >= replica.ejected_until:
                replica.ejected = False
                replica.failures = 0
                log.info("triton.replica_readmitted", replica=replica.target)
        elif not replica.ejected or now >= replica.ejected_until:
            self._eject(replica, "health probe failed")

    async def _check(self, replica: Replica) -> bool:
        """ServerReady on ``replica``; concurrent checks of one replica share one probe."""
        if replica._probe is None or replica._probe.done():
            replica._probe = asyncio.create_task(self._server_ready(replica))
        return await asyncio.shield(replica._probe)

    async def _server_ready(self, replica: Replica) -> bool:
        try:
            reply = await replica.unary(SERVER_READY)(b"", timeout=self._settings.triton_probe_timeout_s)
        except grpc.aio.AioRpcError:
            replica.ready = False
            return False
        replica.ready = reply == _SERVER_READY_TRUE
        return replica.ready

    def _eject(self, replica: Replica, why: str) -> None:
        replica.failures += 1
        replica.ready = False
        s = self._settings
        period = min(
            s.triton_eject_s * 2 ** (replica.failures - 1), max(s.triton_eject_max_s, s.triton_eject_s)
        )
        replica.ejected_until = time.monotonic() + period
        if not replica.ejected:
            self.ejections += 1
            log.warning("triton.replica_ejected", replica=replica.target, reason=why, eject_s=period)
        replica.ejected = True

    async def refresh_index(self) -> None:
        """Reads every ready replica's RepositoryIndex; the union is what Triton serves."""
        self._next_index = time.monotonic() + self._settings.triton_index_refresh_s
        request = pb.RepositoryIndexRequest().SerializeToString()
        names: set[str] = set()
        answered = False
        for replica in self.replicas:
            if replica.ejected:
                continue
            try:
                raw = await replica.unary(REPOSITORY_INDEX)(
                    request, timeout=self._settings.triton_probe_timeout_s
                )
            except grpc.aio.AioRpcError:
                continue
            answered = True
            index = pb.RepositoryIndexResponse.FromString(raw)
            replica.models = {m.name: m.state for m in index.models}
            names.update(replica.models)
        if not answered:
            return  # keep what we knew: Triton's models then fail UNAVAILABLE, not NOT_FOUND
        local = set(self._local_models())
        for name in sorted(names & local - self._shadowed_logged):
            log.warning("triton.model_shadowed_by_local", model=name)
            self._shadowed_logged.add(name)
        self._names = frozenset(names)

    async def _update_readiness(self) -> None:
        live = [r for r in self.replicas if r.ready and not r.ejected]
        ready = bool(live) and all(any(r.models.get(m) == "READY" for r in live) for m in self._configured)
        if ready != self._ready:
            self._ready = ready
            log.info("triton.readiness_changed", ready=ready)
            if self.on_readiness is not None:
                await self.on_readiness(ready)

    # ----------------------------------------------------------------- calls

    def _timeout(self, context: grpc.aio.ServicerContext, default: float) -> float:
        remaining = context.time_remaining()
        if remaining is None or remaining > 1e7:  # no deadline on the incoming call
            return min(default, self._settings.triton_max_timeout_s)
        remaining -= self._settings.triton_deadline_margin_s
        if remaining <= 0:
            raise DeadlineExceeded("deadline exceeded before the call was forwarded to Triton")
        return min(remaining, self._settings.triton_max_timeout_s)

    def _pick(self, exclude: Replica | None = None) -> Replica:
        best: Replica | None = None
        n = len(self.replicas)
        start = next(self._rotate) % n
        for i in range(n):
            r = self.replicas[(start + i) % n]
            if r.ejected or r is exclude:
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        if best is None:
            raise Unavailable(
                f"no Triton replica available ({n} configured, all ejected after failing health checks)"
            )
        return best

    @staticmethod
    def _metadata() -> tuple[tuple[str, str], ...] | None:
        rid = request_id_var.get()
        return ((REQUEST_ID_HEADER, rid),) if rid else None

    async def _down(self, replica: Replica, exc: grpc.aio.AioRpcError) -> bool:
        """After UNAVAILABLE: is the replica itself down (then eject it) or was it Triton's answer?"""
        if await self._check(replica):
            return False
        self._eject(replica, exc.details() or "UNAVAILABLE")
        return True

    async def call(self, method: str, payload: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Forwards one unary call's bytes; on a replica found down, retries once on another."""
        timeout = self._timeout(context, self._settings.triton_timeout_s)
        deadline = time.monotonic() + timeout
        metadata = self._metadata()
        failed: Replica | None = None
        while True:
            replica = self._pick(exclude=failed)
            replica.outstanding += 1
            try:
                reply: bytes = await replica.unary(method)(payload, timeout=timeout, metadata=metadata)
                self.outcomes["OK"] += 1
                return reply
            except grpc.aio.AioRpcError as exc:
                self.outcomes[exc.code().name] += 1
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or not await self._down(replica, exc):
                    raise triton_error(exc) from None
                if failed is not None:
                    raise Unavailable(f"Triton replicas unavailable: {exc.details()}") from None
                failed = replica
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise DeadlineExceeded("deadline exceeded while Triton was unavailable") from None
            except asyncio.CancelledError:
                self.outcomes["CANCELLED"] += 1  # the client went away; grpc.aio cancelled the call
                raise
            finally:
                replica.outstanding -= 1

    async def stream(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Forwards a bidirectional stream of bytes to one replica."""
        timeout = self._timeout(context, self._settings.triton_max_timeout_s)
        replica = self._pick()
        replica.outstanding += 1
        call = replica.stream(method)(requests, timeout=timeout, metadata=self._metadata())
        try:
            async for item in call:
                yield item
            self.outcomes["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            self.outcomes[exc.code().name] += 1
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                await self._down(replica, exc)
            raise triton_error(exc) from None
        finally:
            replica.outstanding -= 1
            if not call.done():
                self.outcomes["CANCELLED"] += 1
                call.cancel()

    async def broadcast(self, method: str, payload: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Sends a lifecycle call (load/unload) to every available replica; fails if any fails."""
        targets = [r for r in self.replicas if not r.ejected]
        if not targets:
            self._pick()  # raises Unavailable
        timeout = self._timeout(context, self._settings.triton_max_timeout_s)
        results = await asyncio.gather(
            *(r.unary(method)(payload, timeout=timeout, metadata=self._metadata()) for r in targets),
            return_exceptions=True,
        )
        await self.refresh_index()
        await self._update_readiness()
        for result in results:
            if isinstance(result, grpc.aio.AioRpcError):
                raise triton_error(result)
            if isinstance(result, BaseException):
                raise result
        reply: bytes = results[0]  # type: ignore[assignment]
        return reply


# --------------------------------------------------------------------------- the router


def _name_of(request: bytes, number: int = 1) -> str:
    return scan_string_fields(request, (number,)).get(number, "")


def _decode(deserialize: Callable[[bytes], Any], raw: bytes) -> Any:
    """The local handler's request; bytes that do not parse are INVALID_ARGUMENT (the common
    chain's guard already makes ``deserialize`` return a marker its handler refuses; this covers a
    router installed without it)."""
    try:
        return deserialize(raw)
    except Exception as exc:
        raise MalformedRequest(f"malformed request message: {str(exc)[:200]}") from None


async def _local_unary(
    inner: grpc.RpcMethodHandler, request: bytes, context: grpc.aio.ServicerContext
) -> Any:
    deserialize = inner.request_deserializer
    handle: Any = inner.unary_unary
    result = handle(_decode(deserialize, request) if deserialize else request, context)
    if inspect.isawaitable(result):
        result = await result
    serialize = inner.response_serializer
    return serialize(result) if serialize else result


async def _local_unary_optional(
    inner: grpc.RpcMethodHandler, request: bytes, context: grpc.aio.ServicerContext
) -> bytes | None:
    """The local servicer's answer, or None when it does not implement the RPC yet."""
    try:
        reply: bytes = await _local_unary(inner, request, context)
        return reply
    except NotImplementedError:
        context.set_code(grpc.StatusCode.OK)
        context.set_details("")
        return None


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for item in rest:
        yield item


class TritonRouter(grpc.aio.ServerInterceptor):
    """Sends each inference-service RPC about a Triton-served model to Triton, undecoded, and
    everything else to the local servicer (which it wraps, so the local servicer knows nothing
    of Triton). Installed through ``grpc_server(..., wrappers=[router.wrap])``: inside the error
    mapping, so Triton's statuses travel as ServiceErrors with Triton's messages."""

    def __init__(self, backend: TritonBackend, ready: Callable[[], bool] | None = None) -> None:
        self._backend = backend
        self._ready = ready
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._builders: dict[str, Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]] = {
            MODEL_INFER: self._infer,
            MODEL_STREAM_INFER: self._stream_infer,
            SERVER_READY: self._server_ready,
            MODEL_READY: self._by_name(1),
            MODEL_METADATA: self._by_name(1),
            MODEL_CONFIG: self._by_name(1),
            MODEL_STATISTICS: self._statistics,
            REPOSITORY_INDEX: self._repository_index,
            REPOSITORY_MODEL_LOAD: self._lifecycle,
            REPOSITORY_MODEL_UNLOAD: self._lifecycle,
        }

    def wrap(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The routing handler for ``method`` around the local one. Installed as a handler
        wrapper, ``grpc_server(..., wrappers=[router.wrap])``: applied once when the inference
        service is registered, so routing costs no interceptor hop per RPC."""
        build = self._builders.get(method)
        if inner is None or build is None:
            return inner
        cached = self._cache.get(method)
        if cached is not None and cached[0] is inner:
            return cached[1]
        wrapped = build(method, inner)
        self._cache[method] = (inner, wrapped)
        return wrapped

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The same routing as a grpc.aio interceptor (``grpc_server(..., interceptors=[router])``)."""
        return self.wrap(handler_call_details.method, await continuation(handler_call_details))

    def _infer(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend

        async def model_infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if backend.serves(_name_of(request)):
                return await backend.call(MODEL_INFER, request, context)
            reply: bytes = await _local_unary(inner, request, context)
            return reply

        return grpc.unary_unary_rpc_method_handler(model_infer)

    def _stream_infer(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend

        async def model_stream_infer(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            it = requests.__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            if backend.serves(_name_of(first)):
                async for reply in backend.stream(MODEL_STREAM_INFER, _prepend(first, it), context):
                    yield reply
                return
            deserialize = inner.request_deserializer or (lambda b: b)
            serialize = inner.response_serializer or (lambda m: m)

            async def decoded() -> AsyncIterator[Any]:
                async for raw in _prepend(first, it):
                    yield _decode(deserialize, raw)

            handle: Any = inner.stream_stream
            async for item in handle(decoded(), context):
                yield serialize(item)

        return grpc.stream_stream_rpc_method_handler(model_stream_infer)

    def _by_name(self, number: int) -> Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]:
        backend = self._backend

        def build(method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
            async def by_name(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                if backend.serves(_name_of(request, number)):
                    return await backend.call(method, request, context)
                reply: bytes = await _local_unary(inner, request, context)
                return reply

            return grpc.unary_unary_rpc_method_handler(by_name)

        return build

    def _server_ready(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend

        ready = self._ready

        async def server_ready(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if ready is not None:  # the composition root's combined readiness
                return pb.ServerReadyResponse(ready=ready()).SerializeToString()
            local = await _local_unary_optional(inner, request, context)
            local_ready = local is None or pb.ServerReadyResponse.FromString(local).ready
            return pb.ServerReadyResponse(ready=local_ready and backend.ready).SerializeToString()

        return grpc.unary_unary_rpc_method_handler(server_ready)

    def _statistics(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend
        by_name = self._by_name(1)(method, inner)

        async def statistics(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if _name_of(request):
                handle: Any = by_name.unary_unary
                reply: bytes = await handle(request, context)
                return reply
            merged = pb.ModelStatisticsResponse()
            local = await _local_unary_optional(inner, request, context)
            if local is not None:
                merged.MergeFromString(local)
            triton = pb.ModelStatisticsResponse.FromString(
                await backend.call(MODEL_STATISTICS, request, context)
            )
            merged.model_stats.extend(s for s in triton.model_stats if backend.serves(s.name))
            return merged.SerializeToString()

        return grpc.unary_unary_rpc_method_handler(statistics)

    def _repository_index(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend

        async def repository_index(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            merged = pb.RepositoryIndexResponse()
            local = await _local_unary_optional(inner, request, context)
            if local is not None:
                merged.MergeFromString(local)
            triton = pb.RepositoryIndexResponse.FromString(
                await backend.call(REPOSITORY_INDEX, request, context)
            )
            merged.models.extend(m for m in triton.models if backend.serves(m.name))
            return merged.SerializeToString()

        return grpc.unary_unary_rpc_method_handler(repository_index)

    def _lifecycle(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        backend = self._backend

        async def lifecycle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            name = _name_of(request, 2)  # RepositoryModelLoad/UnloadRequest.model_name
            if not backend.serves(name):
                reply: bytes = await _local_unary(inner, request, context)
                return reply
            if scan_fields(request, (3,)):  # parameters map (config overrides, file uploads)
                raise InvalidArgument(
                    f"model {name!r} is served by Triton: load/unload parameters are not accepted "
                    "(Triton's repository API is not exposed)"
                )
            return await backend.broadcast(method, request, context)

        return grpc.unary_unary_rpc_method_handler(lifecycle)


def triton_backend(
    settings: ModelServerSettings, *, local_models: Callable[[], Collection[str]] = frozenset
) -> TritonBackend | None:
    """The (not yet started) backend, or None when ``triton_url`` is empty (Triton path off)."""
    if not settings.triton_url.strip():
        return None
    return TritonBackend(settings, local_models=local_models)
