"""modelserve_common.handlers: handlers of all four arities built by method_handler, rebuilt around
a new behaviour by replace_behaviour (arity and serializers kept), served by a real grpc.aio server
through the chain; and the per-method HandlerCache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from modelserve_common.config import BaseServiceSettings
from modelserve_common.handlers import (
    Arity,
    HandlerCache,
    arity,
    behaviour,
    method_handler,
    replace_behaviour,
    replies_of,
    reply_of,
)
from modelserve_common.server import grpc_server

SERVICE = "probe.v1.Bytes"
KINDS: dict[str, Arity] = {
    "UnaryUnary": (False, False),
    "UnaryStream": (False, True),
    "StreamUnary": (True, False),
    "StreamStream": (True, True),
}


async def _collect(requests: Any) -> list[bytes]:
    return [r async for r in requests]


def _echo(kind: Arity) -> Any:
    """Bytes in, bytes out: each behaviour answers what it received, upper-cased."""
    if kind == (False, False):

        async def uu(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request.upper()

        return uu
    if kind == (False, True):

        async def us(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            for b in request:
                yield bytes([b]).upper()

        return us
    if kind == (True, False):

        async def su(requests: Any, context: grpc.aio.ServicerContext) -> bytes:
            return b"".join(await _collect(requests)).upper()

        return su

    async def ss(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for r in requests:
            yield r.upper()

    return ss


class BytesService(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.handlers = {f"/{SERVICE}/{n}": method_handler(k, _echo(k)) for n, k in KINDS.items()}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self.handlers.get(details.method)


def tagging(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A wrapper written once for all four arities: '!' after every reply."""
    inner = behaviour(handler)
    if handler.response_streaming:

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for item in replies_of(inner(request, context)):
                yield item + b"!"

        return replace_behaviour(handler, streamed)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        reply: bytes = await reply_of(inner(request, context))
        return reply + b"!"

    return replace_behaviour(handler, unary)


async def _requests() -> AsyncIterator[bytes]:
    for part in (b"ab", b"c"):
        yield part


async def test_every_arity_is_built_and_wrapped_alike() -> None:
    settings = BaseServiceSettings(grpc_host="127.0.0.1", grpc_port=0, shutdown_grace_s=1.0)
    async with grpc_server(settings, [], handlers=[BytesService()], wrappers=[tagging]) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            uu = await ch.unary_unary(f"/{SERVICE}/UnaryUnary")(b"ab", timeout=5)
            us = [r async for r in ch.unary_stream(f"/{SERVICE}/UnaryStream")(b"ab", timeout=5)]
            su = await ch.stream_unary(f"/{SERVICE}/StreamUnary")(_requests(), timeout=5)
            ss = [r async for r in ch.stream_stream(f"/{SERVICE}/StreamStream")(_requests(), timeout=5)]
    assert (uu, us, su, ss) == (b"AB!", [b"A!", b"B!"], b"ABC!", [b"AB!", b"C!"])


@pytest.mark.parametrize("kind", sorted(KINDS.values()))
def test_replace_behaviour_keeps_arity_and_serializers(kind: Arity) -> None:
    def de(b: bytes) -> str:
        return b.decode()

    def ser(s: str) -> bytes:
        return s.encode()

    original = method_handler(kind, _echo(kind), de, ser)
    assert arity(original) == kind and behaviour(original) is not None

    async def other(request: Any, context: Any) -> None:
        return None

    replaced = replace_behaviour(original, other)
    assert arity(replaced) == kind and behaviour(replaced) is other
    assert (replaced.request_deserializer, replaced.response_serializer) == (de, ser)
    swapped = replace_behaviour(original, other, request_deserializer=None)
    assert swapped.request_deserializer is None and swapped.response_serializer is ser


def test_handler_cache_wraps_once_per_method_until_the_handler_changes() -> None:
    built: list[str] = []

    def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        built.append(method)
        return replace_behaviour(handler, behaviour(handler))

    cache = HandlerCache(wrap)
    first = method_handler((False, False), _echo((False, False)))
    a = cache.get("/s/A", first)
    assert cache.get("/s/A", first) is a and built == ["/s/A"]
    cache.get("/s/B", first)
    second = method_handler((False, False), _echo((False, False)))
    assert cache.get("/s/A", second) is not a
    assert built == ["/s/A", "/s/B", "/s/A"]
