"""The gRPC front door: every method of every fronted service, proxied as raw bytes (identity
serializers, so messages are never decoded), with deadlines, metadata both ways, and the same
guard as REST. Inference calls that name a model are read just far enough (two top-level string
fields, with ``modelserve_common.wire``) to check the tenant and apply canary routing; a chosen
version is appended as one more field 2, which protobuf's last-one-wins rule makes the request's
model_version."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from modelserve.inference.v2 import grpc_service_pb2 as inference_pb
from modelserve_common.errors import InvalidArgument, ServiceError
from modelserve_common.handlers import Arity, method_handler
from modelserve_common.wire import infer_routing
from modelserve_gateway import metadata
from modelserve_gateway.audit import audited
from modelserve_gateway.clients import Reply, Upstream, Upstreams
from modelserve_gateway.guard import Admission, Guard
from modelserve_gateway.metrics import GRPC_TENANT, counted
from modelserve_gateway.proxy_relay import (
    InOrder,
    credentials_of,
    relay_failure,
    relay_stream,
    set_trailing,
    stream_error,
    upstream_deadline,
    with_version,
)
from modelserve_gateway.scopes import is_write

_INF = "/inference.GRPCInferenceService/"
MODEL_METHODS = {
    _INF + m
    for m in (
        "ModelInfer",
        "ModelStreamInfer",
        "ModelMetadata",
        "ModelReady",
        "ModelConfig",
        "ModelStatistics",
    )
}
CANARY_METHODS = {_INF + "ModelInfer", _INF + "ModelStreamInfer"}
STREAM_INFER = _INF + "ModelStreamInfer"
STATISTICS = _INF + "ModelStatistics"


class FrontDoor(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """A generic handler answering every method of ``services``; unknown methods fall through
    to gRPC's UNIMPLEMENTED."""

    def __init__(
        self,
        services: Sequence[ServiceDescriptor],
        upstreams: Upstreams,
        guard: Guard,
        route_key_header: str,
        *,
        stream_buffer: int = 16,
    ) -> None:
        self._guard = guard
        self._stream_buffer = stream_buffer
        self._route_key = route_key_header
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for svc in services:
            up = upstreams.by_service[svc.full_name]
            for md in svc.methods:
                method = f"/{svc.full_name}/{md.name}"
                self._handlers[method] = counted(
                    method, self._handler(method, up, md.client_streaming, md.server_streaming)
                )

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(handler_call_details.method)

    async def _admit(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Admission, list[tuple[str, Any]]]:
        """Guards the call; the caller releases ``in_flight`` when the call ends."""
        md: Any = context.invocation_metadata() or ()
        try:
            adm = await self._guard.admit(method, credentials_of(md))
        except ServiceError as exc:
            set_trailing(context, getattr(exc, "headers", ()))
            raise
        GRPC_TENANT.set(adm.principal.tenant or "")
        return adm, metadata.from_grpc(md, adm)

    async def _route(
        self, method: str, adm: Admission, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        if method not in MODEL_METHODS:
            return request
        routing = infer_routing(request)
        model, version = routing.model_name, routing.model_version
        if not model and method == STATISTICS:
            return request  # every model's statistics: a tenant's answer is filtered (_own_stats)
        if not model and adm.principal.tenant:
            raise InvalidArgument(
                f"{method.rsplit('/', 1)[-1]} needs a model name for a tenant's credentials"
            )
        key = None
        for k, v in context.invocation_metadata() or ():
            if k == self._route_key:
                key = str(v)
        try:
            routed = await self._guard.route_model(adm, model, version, key)
        except ServiceError as exc:
            set_trailing(context, getattr(exc, "headers", ()))
            raise
        if method in CANARY_METHODS and routed.version and routed.version != version:
            return with_version(request, routed.version)
        return request

    def _handler(
        self, method: str, up: Upstream, client_streaming: bool, server_streaming: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        guard_write = is_write(method)

        def timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float:
            return upstream_deadline(context, up.timeout_s, server_streaming)

        if not client_streaming and not server_streaming:
            return self._unary_handler(method, up, guard_write)

        if not client_streaming:

            async def unary_stream(
                request: bytes, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[bytes]:
                adm, md = await self._admit(method, context)
                call = up.open_stream(method, request, md, timeout(context))
                async for item in relay_stream(call, adm, context, method, guard_write):
                    yield item
                set_trailing(context, metadata.to_grpc(await call.trailing_metadata()))

            return self._serve((False, True), unary_stream)

        if not server_streaming:

            async def stream_unary(
                request_iter: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
            ) -> bytes:
                adm, md = await self._admit(method, context)
                try:
                    with audited(adm.principal, method, enabled=guard_write):
                        return await up.call_stream_unary(
                            method, self._routed(method, adm, request_iter, context), md, timeout(context)
                        )
                except grpc.aio.AioRpcError as exc:
                    await relay_failure(exc, context)
                    raise

            return self._serve((True, False), stream_unary)

        if method == STREAM_INFER:
            return self._serve((True, True), self._stream_infer(method, up, timeout))

        async def stream_stream(
            request_iter: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            adm, md = await self._admit(method, context)
            call = up.open_stream(
                method, self._routed(method, adm, request_iter, context), md, timeout(context)
            )
            async for item in relay_stream(call, adm, context, method, guard_write):
                yield item

        return self._serve((True, True), stream_stream)

    def _unary_handler(self, method: str, up: Upstream, guard_write: bool) -> grpc.RpcMethodHandler[Any, Any]:
        """A unary method (the data path: ModelInfer): one coroutine around the upstream call, the
        in-flight limit counted here rather than by a wrapper, no audit block for reads."""
        limiter = self._guard.in_flight
        routed = method in MODEL_METHODS
        default_s = up.timeout_s

        async def unary_unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            limiter.acquire()
            try:
                adm, md = await self._admit(method, context)
                if routed:
                    request = await self._route(method, adm, request, context)
                left = context.time_remaining()
                deadline = default_s if left is None or left > default_s else left
                try:
                    if guard_write:
                        with audited(adm.principal, method):
                            reply = await up.call_unary(method, request, md, deadline)
                    else:
                        reply = await up.call_unary(method, request, md, deadline)
                except grpc.aio.AioRpcError as exc:
                    await relay_failure(exc, context)
                    raise
                return await self._answer(method, adm, reply, context)
            finally:
                limiter.release()

        return method_handler((False, False), unary_unary)

    async def _routed(
        self,
        method: str,
        adm: Admission,
        it: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[bytes]:
        """A client stream's requests, each checked and routed like a unary one."""
        async for item in it:
            yield await self._route(method, adm, item, context)

    async def _answer(
        self, method: str, adm: Admission, reply: Reply, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """A unary upstream answer to the client: a tenant's statistics filtered, the upstream's
        metadata and the admission's headers."""
        resp = reply.message
        if method == STATISTICS and adm.principal.tenant:
            resp = await self._own_stats(resp, adm.principal.tenant)
        initial = metadata.to_grpc(reply.initial_metadata) if reply.initial_metadata else []
        if initial or adm.headers:
            await context.send_initial_metadata(initial + adm.headers)
        set_trailing(context, metadata.to_grpc(reply.trailing_metadata))
        return resp

    async def _own_stats(self, resp: bytes, tenant: str) -> bytes:
        """A tenant's ModelStatistics answer keeps the models whose registry deployment is the
        tenant's own or shared (Guard.owned_model, as REST's /v2/models/stats does)."""
        stats = inference_pb.ModelStatisticsResponse.FromString(resp)
        own = []
        for st in stats.model_stats:
            try:
                await self._guard.owned_model(st.name, tenant)
            except ServiceError:
                continue
            own.append(st)
        if len(own) == len(stats.model_stats):
            return resp
        return inference_pb.ModelStatisticsResponse(model_stats=own).SerializeToString()

    def _stream_infer(self, method: str, up: Upstream, timeout: Any) -> Any:
        """ModelStreamInfer: every message is answered, in order. One the guard refuses (another
        tenant's model, a per-model limit, a malformed message) gets an error response of its own
        (``error_message``, with the request's model name, version and id in ``infer_response``)
        and the stream goes on; the others go upstream and every upstream answer is relayed as it
        comes. A refusal is held until the upstream has answered as many messages as were sent
        before it (one answer per request, as KServe streams without decoupled models do), so
        answers keep the order of the requests; more than ``stream_buffer`` refusals held, or the
        upstream's end, releases them at once (a decoupled model may answer a request more or less
        than once: nothing waits forever, nothing is lost)."""

        async def stream_infer(
            request_iter: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            adm, md = await self._admit(method, context)
            # (None, answer) from the upstream, or (messages sent upstream before it, refusal).
            out: asyncio.Queue[tuple[int | None, bytes] | None] = asyncio.Queue(maxsize=self._stream_buffer)
            upstream_md: list[Any] = []
            failure: list[Exception] = []
            sent = 0

            async def admitted() -> AsyncIterator[bytes]:
                nonlocal sent
                async for item in request_iter:
                    try:
                        routed = await self._route(method, adm, item, context)
                    except ServiceError as exc:
                        await out.put((sent, stream_error(exc.message, item)))
                        continue
                    sent += 1
                    yield routed

            call = up.open_stream(method, admitted(), md, timeout(context))

            async def relay() -> None:
                try:
                    upstream_md.extend(metadata.to_grpc(await call.initial_metadata()))
                    async for item in call:
                        await out.put((None, item))
                except Exception as exc:  # handed to the handler below; cancellation is not
                    failure.append(exc)
                await out.put(None)

            relay_task = asyncio.create_task(relay(), name="front-door-stream-relay")
            order = InOrder(self._stream_buffer)
            sent_md = False
            try:
                while True:
                    entry = await out.get()
                    for answer in order.take(entry):
                        if not sent_md:
                            await context.send_initial_metadata(upstream_md + adm.headers)
                            sent_md = True
                        yield answer
                    if entry is None:
                        break
                if failure:
                    if isinstance(failure[0], grpc.aio.AioRpcError):
                        await relay_failure(failure[0], context)
                    raise failure[0]
                if not sent_md:
                    await context.send_initial_metadata(upstream_md + adm.headers)
            finally:
                call.cancel()
                relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay_task
            set_trailing(context, metadata.to_grpc(await call.trailing_metadata()))

        return stream_infer

    def _serve(self, kind: Arity, fn: Any) -> grpc.RpcMethodHandler[Any, Any]:
        """``fn`` as a bytes-in, bytes-out handler of arity ``kind``, counted in the in-flight
        limit while it runs."""
        limiter = self._guard.in_flight
        if kind[1]:

            async def streamed(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                limiter.acquire()
                try:
                    async for item in fn(request, context):
                        yield item
                finally:
                    limiter.release()

            return method_handler(kind, streamed)

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            limiter.acquire()
            try:
                return await fn(request, context)
            finally:
                limiter.release()

        return method_handler(kind, unary)
