"""Malformed request messages answer INVALID_ARGUMENT "malformed request message: ...".

grpc deserializes a request before any handler code runs; when the bytes are not a valid message
(truncated, a string field that is not UTF-8, an over-long varint) the deserializer's DecodeError
escapes to grpc itself, which answers UNKNOWN "Unexpected <class 'DecodeError'>" without our
error mapping, access log or request id. :func:`guard_request_deserializer` is a handler wrapper
(``(full_method, handler) -> handler``) that swaps the deserializer for one that never raises: a
message that does not parse becomes a :class:`_Malformed` marker, and the wrapped behaviour raises
:class:`MalformedRequest` (a ServiceError, INVALID_ARGUMENT) when it receives one, so the error
passes through the usual mapping. Streaming requests are checked as they are iterated (a stream's
good messages before the bad one are handled as usual). ``context.read()`` is not covered.

It is applied innermost (closest to the servicer), once per method, when handlers are registered:
see :func:`modelserve_common.interceptors.server_chain`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from modelserve_common.errors import InvalidArgument

MESSAGE_LIMIT = 200
"""Most characters of the parser's own explanation repeated in the status message."""


class MalformedRequest(InvalidArgument):
    """A request message whose bytes do not parse as the method's request type."""


class _Malformed:
    """What the guarded deserializer returns for bytes that do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: MalformedRequest) -> None:
        self.error = error


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + "..."
    return f"malformed request message: {text}"


def safe_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` that returns a :class:`_Malformed` marker instead of raising."""

    def guarded(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or anything a custom deserializer raises
            return _Malformed(MalformedRequest(_explain(exc)))

    return guarded


def check(request: Any) -> Any:
    """``request`` itself, or raises :class:`MalformedRequest` when it is the marker."""
    if type(request) is _Malformed:
        raise request.error
    return request


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for item in requests:
        if type(item) is _Malformed:
            raise item.error
        yield item


async def _results(result: Any) -> AsyncIterator[Any]:
    if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result


def guard_request_deserializer(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` whose malformed requests raise :class:`MalformedRequest` (INVALID_ARGUMENT)
    inside the handler instead of failing in grpc's deserializer; handlers without a request
    deserializer (bytes in) are returned as they are."""
    if handler is None or handler.request_deserializer is None:
        return handler
    deserialize = safe_deserializer(handler.request_deserializer)
    serialize = handler.response_serializer

    if not handler.request_streaming and not handler.response_streaming:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if type(request) is _Malformed:
                raise request.error
            result = inner_uu(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserialize, serialize)

    if not handler.request_streaming:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if type(request) is _Malformed:
                raise request.error
            async for item in _results(inner_us(request, context)):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserialize, serialize)

    if not handler.response_streaming:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            result = inner_su(_checked(requests), context)
            return await result if inspect.isawaitable(result) else result

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserialize, serialize)

    inner_ss: Any = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in _results(inner_ss(_checked(requests), context)):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, deserialize, serialize)


__all__ = ["MalformedRequest", "MESSAGE_LIMIT", "check", "guard_request_deserializer", "safe_deserializer"]
