"""The Triton router: which inference-service RPC goes to Triton and which to the local servicer.

Hot path: a Triton-served model's ModelInfer request is never decoded. The router reads only the
routing fields of the serialized ModelInferRequest (model_name=1, model_version=2, id=3) with
``modelserve_common.wire`` and hands the bytes to the replica pool (triton_pool.py); Triton's reply
comes back as bytes the same way. ModelStreamInfer is forwarded as a stream (routed by its first
request). Our own stubs' wire protocol is Triton's.

Metadata, config, readiness and statistics of a Triton model come from Triton;
RepositoryModelLoad/Unload of a Triton model goes to every replica (load parameters, which could
upload files or override configs, are refused).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.errors import InvalidArgument
from modelserve_common.malformed import MalformedRequest
from modelserve_common.wire import scan_fields, string_field
from modelserve_model_server import methods
from modelserve_model_server.methods import MODEL_INFER
from modelserve_model_server.triton_pool import TritonPool

# --------------------------------------------------------------------------- the router


def _decode(deserialize: Callable[[bytes], Any], raw: bytes) -> Any:
    """The local handler's request; bytes that do not parse are INVALID_ARGUMENT (the common
    chain's guard already makes ``deserialize`` return a marker its handler refuses; this covers a
    router installed without it)."""
    try:
        return deserialize(raw)
    except Exception as exc:
        raise MalformedRequest(f"malformed request message: {str(exc)[:200]}") from None


async def _local_unary(
    inner: grpc.RpcMethodHandler[Any, Any], request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> Any:
    deserialize = inner.request_deserializer
    handle: Any = inner.unary_unary
    result = handle(_decode(deserialize, request) if deserialize else request, context)
    if inspect.isawaitable(result):
        result = await result
    serialize = inner.response_serializer
    return serialize(result) if serialize else result


async def _local_unary_optional(
    inner: grpc.RpcMethodHandler[Any, Any], request: bytes, context: grpc.aio.ServicerContext[Any, Any]
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


class TritonRouter:
    """Sends each inference-service RPC about a Triton-served model to Triton, undecoded, and
    everything else to the local servicer (which it wraps, so the local servicer knows nothing
    of Triton). Installed through ``grpc_server(..., wrappers=[router.wrap])``: inside the error
    mapping, so Triton's statuses travel as ServiceErrors with Triton's messages."""

    def __init__(self, backend: TritonPool, ready: Callable[[], bool] | None = None) -> None:
        self._backend = backend
        self._ready = ready
        self.prediction_log: (
            Callable[[bytes, Awaitable[bytes], grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]] | None
        ) = None
        """Set by the composition root: forwarded ModelInfer calls go through the prediction logger."""
        self._builders: dict[
            str, Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]
        ] = {
            methods.MODEL_INFER: self._infer,
            methods.MODEL_STREAM_INFER: self._stream_infer,
            methods.SERVER_READY: self._server_ready,
            methods.MODEL_READY: self._by_name(1),
            methods.MODEL_METADATA: self._by_name(1),
            methods.MODEL_CONFIG: self._by_name(1),
            # without a name: the local servicer, whose service lists Triton's models too
            methods.MODEL_STATISTICS: self._by_name(1),
            methods.REPOSITORY_INDEX: self._local,
            methods.REPOSITORY_MODEL_LOAD: self._lifecycle,
            methods.REPOSITORY_MODEL_UNLOAD: self._lifecycle,
        }

    def wrap(self, method: str, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """The routing handler for ``method`` around the local one. Installed as a handler
        wrapper, ``grpc_server(..., wrappers=[router.wrap])``: applied once when the inference
        service is registered (the server caches what it returns), so routing costs no
        interceptor hop per RPC."""
        build = self._builders.get(method)
        if inner is None or build is None:
            return inner
        return build(method, inner)

    def _infer(self, method: str, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        backend = self._backend

        async def model_infer(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if backend.serves(string_field(request, 1)):  # bytes go on as received: no copy, no parse
                forwarded = backend.call_within(MODEL_INFER, request, context.time_remaining())
                if self.prediction_log is not None:
                    return await self.prediction_log(request, forwarded, context)
                return await forwarded
            reply: bytes = await _local_unary(inner, request, context)
            return reply

        return grpc.unary_unary_rpc_method_handler(model_infer)

    def _stream_infer(
        self, method: str, inner: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        backend = self._backend

        async def model_stream_infer(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            it = requests.__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            if backend.serves(string_field(first, 1)):
                async for reply in backend.stream(methods.MODEL_STREAM_INFER, _prepend(first, it), context):
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

    def _by_name(
        self, number: int
    ) -> Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]:
        backend = self._backend

        def build(method: str, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
            async def by_name(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                if backend.serves(string_field(request, number)):
                    return await backend.call(method, request, context)
                reply: bytes = await _local_unary(inner, request, context)
                return reply

            return grpc.unary_unary_rpc_method_handler(by_name)

        return build

    def _local(self, method: str, inner: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """Always the local servicer (its service lists Triton's models too), bytes in and out
        like every routed RPC, so the handler wrappers outside the router see bytes."""

        async def local(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            reply: bytes = await _local_unary(inner, request, context)
            return reply

        return grpc.unary_unary_rpc_method_handler(local)

    def _server_ready(
        self, method: str, inner: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        backend = self._backend

        ready = self._ready

        async def server_ready(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if ready is not None:  # the composition root's combined readiness
                return pb.ServerReadyResponse(ready=ready()).SerializeToString()
            local = await _local_unary_optional(inner, request, context)
            local_ready = local is None or pb.ServerReadyResponse.FromString(local).ready
            return pb.ServerReadyResponse(ready=local_ready and backend.ready).SerializeToString()

        return grpc.unary_unary_rpc_method_handler(server_ready)

    def _lifecycle(
        self, method: str, inner: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        backend = self._backend

        async def lifecycle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            name = string_field(request, 2)  # RepositoryModelLoad/UnloadRequest.model_name
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
