"""Version refs that look numeric to str.isdigit() but are not ASCII integers ("²", "٣"), and
ASCII numbers too long for int() (5000 digits: Python's digit limit raises ValueError), answer
like any other version this server does not have, over the wire: never INTERNAL."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.context import TENANT_HEADER

Input = pb.ModelInferRequest.InferInputTensor


def infer(version: str) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="addsub",
        model_version=version,
        inputs=[Input(name="A", datatype="FP32", shape=[4]), Input(name="B", datatype="FP32", shape=[4])],
        raw_input_contents=[np.ones(4, np.float32).tobytes()] * 2,
    )


@pytest.mark.parametrize(
    ("version", "code", "message"),
    [
        ("\u00b2", grpc.StatusCode.INVALID_ARGUMENT, "model version '\u00b2' is not valid"),
        ("\u0663", grpc.StatusCode.INVALID_ARGUMENT, "model version '\u0663' is not valid"),
        ("9" * 5000, grpc.StatusCode.NOT_FOUND, "model 'addsub' has no version '99999"),
        ("0" * 5000, grpc.StatusCode.INVALID_ARGUMENT, "is not valid: expected a positive integer"),
    ],
)
async def test_odd_version_refs_are_answered_not_internal(
    server: Any, version: str, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(infer(version), timeout=10)
    assert exc.value.code() is code, exc.value.details()
    assert message in (exc.value.details() or "")
    assert len(exc.value.details() or "") < 400
    with pytest.raises(grpc.aio.AioRpcError) as meta:
        await server.stub.ModelMetadata(pb.ModelMetadataRequest(name="addsub", version=version), timeout=10)
    assert meta.value.code() is code, meta.value.details()


@pytest.mark.parametrize(
    ("version", "code", "message"),
    [
        ("\u00b2", grpc.StatusCode.INVALID_ARGUMENT, "model version '\u00b2' is not valid"),
        ("9" * 5000, grpc.StatusCode.NOT_FOUND, "model 'addsub' not found in the repository"),
    ],
)
async def test_odd_version_refs_from_a_tenant_get_the_missing_model_answer(
    server: Any, version: str, code: grpc.StatusCode, message: str
) -> None:
    # addsub is a platform model: hidden from tenants, answered exactly as a missing model
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(infer(version), timeout=10, metadata=((TENANT_HEADER, "t1"),))
    assert exc.value.code() is code, exc.value.details()
    assert message in (exc.value.details() or "")


async def test_the_plain_version_still_answers(server: Any) -> None:
    reply = await server.stub.ModelInfer(infer("1"), timeout=10)
    assert reply.model_name == "addsub"
