"""Malformed request bytes (sent raw through a generic channel with identity serializers) answer
INVALID_ARGUMENT "malformed request message: ..." through the common chain, for every service
served by modelserve_common.server.grpc_server: unary, unary-stream (health Watch) and
bidirectional streams, with and without handler wrappers of the service; the access log and metrics
see the mapped code; well-formed calls are untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from helpers import SERVICE, ProbeServicer, probe_service

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common import metrics
from modelserve_common.config import BaseServiceSettings
from modelserve_common.handlers import behaviour, replace_behaviour
from modelserve_common.malformed import guard_request_deserializer
from modelserve_common.server import grpc_server

MALFORMED = {
    "truncated": b"\x0a\x05ab",
    "invalid_utf8": b"\x0a\x02\xff\xfe",
    "varint_11_bytes": b"\xff" * 10 + b"\x01",
}


def pass_through(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A service's handler wrapper (outside the guard) that rebuilds every handler it is given."""
    return replace_behaviour(handler, behaviour(handler))


@pytest.fixture(params=["chain", "with_wrapper"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    settings = BaseServiceSettings(grpc_host="127.0.0.1", grpc_port=0, shutdown_grace_s=1.0)
    wrappers = [pass_through] if request.param == "with_wrapper" else []
    async with grpc_server(settings, [probe_service(ProbeServicer())], wrappers=wrappers) as srv:
        await srv.health.set_serving()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            yield ch


def _raw(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("method", [f"/{SERVICE}/ModelReady", "/grpc.health.v1.Health/Check"])
async def test_malformed_unary(channel, method, kind):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _raw(channel, method)(MALFORMED[kind], timeout=5)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("malformed request message: ")


async def test_malformed_is_counted_with_its_mapped_code(channel):
    child = metrics.GRPC_SERVER_HANDLED.labels("unary", SERVICE, "ModelReady", "INVALID_ARGUMENT")
    before = child.get()
    with pytest.raises(grpc.aio.AioRpcError):
        await _raw(channel, f"/{SERVICE}/ModelReady")(MALFORMED["truncated"], timeout=5)
    assert child.get() == before + 1


async def test_malformed_unary_stream(channel):
    call = channel.unary_stream(
        "/grpc.health.v1.Health/Watch", request_serializer=None, response_deserializer=None
    )(MALFORMED["truncated"], timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in call:
            pass
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_malformed_in_a_bidi_stream_after_good_messages(channel):
    good = pb.ModelInferRequest(id="one").SerializeToString()
    call = channel.stream_stream(
        f"/{SERVICE}/ModelStreamInfer", request_serializer=None, response_deserializer=None
    )(iter([good, MALFORMED["invalid_utf8"]]), timeout=5)
    ids = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for reply in call:
            ids.append(pb.ModelStreamInferResponse.FromString(reply).infer_response.id)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("malformed request message: ")
    assert ids == ["one"]


async def test_well_formed_calls_are_untouched(channel):
    reply = await _raw(channel, f"/{SERVICE}/ModelReady")(
        pb.ModelReadyRequest(name="x").SerializeToString(), timeout=5
    )
    assert pb.ModelReadyResponse.FromString(reply).ready


def test_handlers_without_a_deserializer_are_left_alone():
    async def behaviour(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    assert guard_request_deserializer("/s/m", handler) is handler
