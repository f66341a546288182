"""max_request_elements (MODEL_SERVER_MAX_REQUEST_ELEMENTS) bounds the elements of all inputs of one
request together, over the wire; max_elements still bounds each tensor. The message names the
limit."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import build_repo, make_settings

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings

Input = pb.ModelInferRequest.InferInputTensor


def addsub() -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="addsub",
        inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
        raw_input_contents=[np.ones(4, np.float32).tobytes()] * 2,
    )


@pytest.mark.parametrize(("limit", "ok"), [(8, True), (7, False)])
async def test_max_request_elements_counts_all_inputs(tmp_path: Path, limit: int, ok: bool) -> None:
    repo = build_repo(tmp_path / "repo")
    settings = make_settings(repo, load_models="addsub", max_request_elements=limit)
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = svc_grpc.GRPCInferenceServiceStub(channel)
            if ok:
                reply = await stub.ModelInfer(addsub(), timeout=10)
                assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [2.0] * 4
                return
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.ModelInfer(addsub(), timeout=10)
            assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert exc.value.details() == (
                "input 'B': the request's inputs hold 8 elements so far; at most 7 are allowed in one request"
            )


def test_the_setting_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_MAX_REQUEST_ELEMENTS", "1234")
    assert ModelServerSettings().max_request_elements == 1234
    monkeypatch.setenv("MODEL_SERVER_MAX_REQUEST_ELEMENTS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ModelServerSettings()
