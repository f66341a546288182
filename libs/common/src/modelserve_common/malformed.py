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
from modelserve_common.handlers import behaviour, replace_behaviour, replies_of, reply_of

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


def guard_request_deserializer(
    method: str, handler: grpc.RpcMethodHandler[Any, Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` whose malformed requests raise :class:`MalformedRequest` (INVALID_ARGUMENT)
    inside the handler instead of failing in grpc's deserializer; handlers without a request
    deserializer (bytes in) are returned as they are."""
    if handler is None or handler.request_deserializer is None:
        return handler
    deserialize = safe_deserializer(handler.request_deserializer)
    inner: Any = behaviour(handler)
    checked: Callable[[Any], Any] = _checked if handler.request_streaming else check

    if handler.response_streaming:

        async def streamed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for item in replies_of(inner(checked(request), context)):
                yield item

        return replace_behaviour(handler, streamed, request_deserializer=deserialize)

    if inspect.iscoroutinefunction(inner):  # the usual servicer method: one coroutine less

        async def unary_coro(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await inner(checked(request), context)

        return replace_behaviour(handler, unary_coro, request_deserializer=deserialize)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await reply_of(inner(checked(request), context))

    return replace_behaviour(handler, unary, request_deserializer=deserialize)
