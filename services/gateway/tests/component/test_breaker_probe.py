"""The circuit breaker's half-open probe: a probe call that ends without an outcome (its caller
cancelled it) hands the probe to the next call, over a real gRPC upstream, on both unary paths
(the intercepted channel and the direct one). Before, the breaker stayed open for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from modelserve_gateway.clients import Upstream
from modelserve_gateway.protection import CircuitBreaker, Overloaded

METHOD = "/test.Slow/Call"


class _Slow(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers b"ok", after a long wait when asked b"slow"."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        if details.method != METHOD:
            return None

        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
            if request == b"slow":
                await asyncio.sleep(60)
            return b"ok"

        return grpc.unary_unary_rpc_method_handler(call)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_Slow()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.mark.parametrize("direct", [False, True])
async def test_a_cancelled_probe_lets_the_next_call_probe(target: str, direct: bool) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        breaker = CircuitBreaker("up", failures=1, open_s=0.0)  # opens at one failure, half-open at once
        up = Upstream("up", channel, 30.0, breaker, direct=channel if direct else None)
        assert (await up.call_unary(METHOD, b"fast", (), 30.0)).message == b"ok"
        breaker.record(grpc.StatusCode.UNAVAILABLE)  # open; with open_s 0 the next call probes
        assert breaker.state == "half_open"
        probe = asyncio.ensure_future(up.call_unary(METHOD, b"slow", (), 30.0))
        for _ in range(100):  # until the probe is in flight
            if breaker._probing:
                break
            await asyncio.sleep(0)
        assert breaker._probing
        with pytest.raises(Overloaded):  # one probe at a time
            await up.call_unary(METHOD, b"fast", (), 30.0)
        probe.cancel()  # the caller goes away: no outcome
        with pytest.raises(asyncio.CancelledError):
            await probe
        # the next call probes, succeeds and closes the breaker
        assert (await up.call_unary(METHOD, b"fast", (), 30.0)).message == b"ok"
        assert breaker.state == "closed"
