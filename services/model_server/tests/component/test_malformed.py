"""Request bytes that are not a valid message (sent raw through a generic channel with identity
serializers) answer INVALID_ARGUMENT "malformed request message: ..." on every RPC of the model
server, unary and streaming (common malformed.py guard), never grpc's UNKNOWN "Unexpected <class
'DecodeError'>"; huge names are echoed clipped, so the real error arrives instead of a transport
RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb

Input = pb.ModelInferRequest.InferInputTensor
SERVICE = "/inference.GRPCInferenceService/"

MALFORMED = {
    "truncated": b"\x0a\x05ab",  # model_name says 5 bytes, 2 follow
    "invalid_utf8": b"\x0a\x02\xff\xfe",  # model_name is not UTF-8
    "varint_11_bytes": b"\xff" * 10 + b"\x01",  # a field key longer than any varint
}


def raw_unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady", "RepositoryModelLoad"])
async def test_malformed_unary_request_is_invalid_argument(server, kind, method):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await raw_unary(server.channel, method)(MALFORMED[kind], timeout=5)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()
    assert exc.value.details().startswith("malformed request message: ")
    assert len(exc.value.details()) < 300


async def test_malformed_message_in_a_stream_fails_the_stream_after_answering_the_good_ones(server):
    good = pb.ModelInferRequest(
        model_name="addsub",
        inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
        raw_input_contents=[np.ones(4, np.float32).tobytes()] * 2,
    ).SerializeToString()
    call = server.channel.stream_stream(
        SERVICE + "ModelStreamInfer", request_serializer=None, response_deserializer=None
    )(iter([good, MALFORMED["truncated"]]), timeout=5)
    answers = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for reply in call:
            answers.append(pb.ModelStreamInferResponse.FromString(reply))
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("malformed request message: ")
    assert len(answers) == 1 and not answers[0].error_message


async def test_the_server_still_answers_after_malformed_requests(server):
    await asyncio.gather(
        *(
            asyncio.ensure_future(_expect_invalid(server.channel, payload))
            for payload in list(MALFORMED.values()) * 5
        )
    )
    reply = await server.stub.ModelReady(pb.ModelReadyRequest(name="addsub"), timeout=5)
    assert reply.ready


async def _expect_invalid(channel: grpc.aio.Channel, payload: bytes) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await raw_unary(channel, "ModelInfer")(payload, timeout=5)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "request_",
    [
        pb.ModelInferRequest(model_name="n" * 10_000),
        pb.ModelInferRequest(
            model_name="addsub", inputs=[Input(name="x" * 10_000, datatype="FP32", shape=[4])]
        ),
        pb.ModelInferRequest(model_name="addsub", inputs=[Input(name="A", datatype="D" * 10_000, shape=[4])]),
        pb.ModelInferRequest(
            model_name="addsub", inputs=[Input(name="A", datatype="FP32", shape=[1] * 5000)]
        ),
        pb.ModelInferRequest(
            model_name="addsub",
            inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
            raw_input_contents=[b"\0" * 16] * 2,
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="o" * 10_000)],
        ),
    ],
    ids=["model_name", "input_name", "datatype", "shape", "output_name"],
)
async def test_huge_values_are_echoed_clipped(server, request_):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(request_, timeout=5)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()
    assert len(exc.value.details()) < 600
