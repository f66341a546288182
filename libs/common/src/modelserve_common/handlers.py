"""What every handler wrapper needs, in one place: a method handler's arity (unary/unary,
unary/stream, stream/unary, stream/stream), the behaviour that serves it, a handler of a given arity
(or of another handler's arity and serializers) around a new behaviour, the two ways a behaviour's
result is consumed, and the per-method cache of wrapped handlers.

A wrapper then writes at most two functions, one for a unary response and one for a streamed one,
instead of four: the chain's observability wrapper, the malformed-request guard, the gateway's
front door and the model server's Triton router and ownership guard all build handlers here."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

Arity = tuple[bool, bool]
"""(request_streaming, response_streaming)."""

Behaviour = Callable[..., Any]
"""``(request or request iterator, context) -> reply``, awaitable, or an async iterator of replies."""

_FACTORIES: dict[Arity, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_KEEP: Any = object()


def arity(handler: grpc.RpcMethodHandler[Any, Any]) -> Arity:
    return bool(handler.request_streaming), bool(handler.response_streaming)


def behaviour(handler: grpc.RpcMethodHandler[Any, Any]) -> Behaviour:
    """The function that serves ``handler`` (its ``unary_unary``, ``unary_stream``, ...)."""
    request_streaming, response_streaming = arity(handler)
    if request_streaming:
        found = handler.stream_stream if response_streaming else handler.stream_unary
    else:
        found = handler.unary_stream if response_streaming else handler.unary_unary
    return found  # type: ignore[return-value]


def method_handler(
    kind: Arity,
    serve: Behaviour,
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of arity ``kind`` served by ``serve`` (no (de)serializers: bytes in and out)."""
    return _FACTORIES[kind](serve, request_deserializer, response_serializer)


def replace_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any], serve: Behaviour, *, request_deserializer: Any = _KEEP
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` served by ``serve`` instead: same arity and serializers (or another request
    deserializer)."""
    deserialize = handler.request_deserializer if request_deserializer is _KEEP else request_deserializer
    return _FACTORIES[arity(handler)](serve, deserialize, handler.response_serializer)


async def reply_of(result: Any) -> Any:
    """A unary behaviour's reply: ``result`` awaited when it is awaitable."""
    return await result if inspect.isawaitable(result) else result


async def replies_of(result: Any) -> AsyncIterator[Any]:
    """A streaming behaviour's replies: ``result`` iterated when it is an async iterator (a
    behaviour that writes with ``context.write`` returns an awaitable instead, awaited here)."""
    if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result


class HandlerCache:
    """Wrapped handlers per method, rebuilt only when the inner handler changes (a generic handler
    may answer each lookup with a new object)."""

    def __init__(
        self, wrap: Callable[[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._wrap = wrap
        self._cache: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def get(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._cache[method] = (handler, wrapped)
        return wrapped


__all__ = [
    "Arity",
    "Behaviour",
    "HandlerCache",
    "arity",
    "behaviour",
    "method_handler",
    "replace_behaviour",
    "replies_of",
    "reply_of",
]
