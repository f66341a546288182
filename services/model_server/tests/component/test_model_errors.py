"""A model's own exceptions over the wire (unary and stream): ValueError/TypeError are the model
rejecting the input (INVALID_ARGUMENT naming the model), anything else and a wrong return type are
the model's fault (INTERNAL naming the model and version); never a bare class name or grpc's
UNKNOWN, and the message is bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import make_settings, write_model

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.server import running_server

Input = pb.ModelInferRequest.InferInputTensor

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]
"""
MODELS = {
    "raises_type": "class Model:\n    def predict(self, inputs):\n        raise TypeError('wants ints')\n",
    "raises_key": "class Model:\n    def predict(self, inputs):\n        raise KeyError('weights')\n",
    "raises_long": "class Model:\n    async def predict(self, i):\n        raise ValueError('v' * 9**5)\n",
    "returns_list": "class Model:\n    def predict(self, inputs):\n        return [1, 2]\n",
}


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[svc_grpc.GRPCInferenceServiceStub]:
    repo = tmp_path / "repo"
    for name, code in MODELS.items():
        write_model(repo, name, CONFIG, code)
    async with running_server(make_settings(repo)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield svc_grpc.GRPCInferenceServiceStub(channel)


def request(model: str) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Input(name="x", datatype="FP32", shape=[1])],
        raw_input_contents=[np.zeros(1, np.float32).tobytes()],
    )


@pytest.mark.parametrize(
    ("model", "code", "start"),
    [
        (
            "raises_type",
            grpc.StatusCode.INVALID_ARGUMENT,
            "model 'raises_type' rejected the input: TypeError: wants ints",
        ),
        ("raises_key", grpc.StatusCode.INTERNAL, "model 'raises_key' version 1 failed: KeyError: 'weights'"),
        (
            "raises_long",
            grpc.StatusCode.INVALID_ARGUMENT,
            "model 'raises_long' rejected the input: ValueError: vvv",
        ),
        (
            "returns_list",
            grpc.StatusCode.INTERNAL,
            "model 'returns_list' version 1: predict returned list, expected dict",
        ),
    ],
)
async def test_model_exception_status_names_the_model(stub, model, code, start):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ModelInfer(request(model), timeout=10)
    assert exc.value.code() is code
    assert exc.value.details().startswith(start)
    assert len(exc.value.details()) < 700
    # a stream reports the same error in the message's error_message and goes on
    replies = [r async for r in stub.ModelStreamInfer(iter([request(model), request(model)]), timeout=10)]
    assert [r.error_message[: len(start) + len(code.name) + 3] for r in replies] == [
        f"[{code.name}] {start}"
    ] * 2
