"""The routing-field scan of serialized ModelInferRequests agrees with protobuf's own parser."""

from __future__ import annotations

import grpc
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server.triton import infer_routing, scan_fields, triton_error


def _request(**fields: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(**fields)
    req.parameters["priority"].int64_param = 300
    req.parameters["flag"].bool_param = True
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(b"\x00" * 16)
    req.outputs.add(name="y")
    return req


@pytest.mark.parametrize(
    "fields",
    [
        {"model_name": "linear"},
        {"model_name": "linéaire", "model_version": "3", "id": "abc"},
        {"model_name": "m" * 300, "id": "x" * 200},
        {},
    ],
)
def test_infer_routing_matches_protobuf(fields: dict[str, str]) -> None:
    req = _request(**fields)
    routing = infer_routing(req.SerializeToString())
    assert (routing.model_name, routing.model_version, routing.id) == (
        req.model_name,
        req.model_version,
        req.id,
    )


def test_infer_routing_last_occurrence_wins_and_order_does_not_matter() -> None:
    tail = pb.ModelInferRequest(model_name="first").SerializeToString()
    body = (
        _request().SerializeToString() + tail + pb.ModelInferRequest(model_name="second").SerializeToString()
    )
    assert infer_routing(body).model_name == pb.ModelInferRequest.FromString(body).model_name == "second"


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05ab", b"\x0a", b"\xff" * 11, b"\x0b\x00", b"\x0a\x02\xff\xfe", b"\x00\x01", b"\x0d\x00"],
    ids=[
        "truncated-string",
        "truncated-length",
        "long-varint",
        "group",
        "bad-utf8",
        "field-0",
        "short-fixed32",
    ],
)
def test_infer_routing_malformed_is_invalid_argument(data: bytes) -> None:
    from modelserve_common.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        infer_routing(data)


def test_scan_fields_skips_large_tensors_without_reading_them() -> None:
    req = _request(model_name="big")
    req.raw_input_contents[0] = b"\x01" * (8 << 20)
    found = scan_fields(req.SerializeToString(), (1, 3))
    assert found == {1: b"big"}


def test_triton_error_keeps_code_and_message() -> None:
    class FakeRpcError(grpc.aio.AioRpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        err = triton_error(FakeRpcError(code, f"triton says {code.name}"))
        assert err.code is code and err.message == f"triton says {code.name}"
