"""The Triton router's local path: bytes whose routing fields scan fine but that do not parse as
the request (a garbled tensor inside) are INVALID_ARGUMENT "malformed request message: ..." even
when the router is installed without the common chain's deserializer guard; and with the guard
(server_chain puts it innermost) the local handler refuses them the same way."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.malformed import MalformedRequest, guard_request_deserializer
from modelserve_model_server.methods import MODEL_INFER
from modelserve_model_server.triton import TritonRouter

# model_name "m" (scans fine), then field 4 (inputs) holding two bytes that are not a message
GARBLED_TENSOR = pb.ModelInferRequest(model_name="m").SerializeToString() + b"\x22\x02\xff\xff"


class LocalOnly:
    """A Triton backend that serves nothing: every call takes the local path."""

    def serves(self, name: str) -> bool:
        return False


async def local_infer(request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
    return pb.ModelInferResponse(model_name=request.model_name)


def local_handler() -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        local_infer, pb.ModelInferRequest.FromString, pb.ModelInferResponse.SerializeToString
    )


@pytest.mark.parametrize("guarded", [False, True], ids=["router_alone", "with_guard"])
async def test_garbled_request_on_the_local_path_is_malformed(guarded: bool) -> None:
    inner = local_handler()
    if guarded:
        inner = guard_request_deserializer(MODEL_INFER, inner)
    routed: Any = TritonRouter(LocalOnly()).wrap(MODEL_INFER, inner)  # type: ignore[arg-type]
    with pytest.raises(MalformedRequest, match="^malformed request message: "):
        await routed.unary_unary(GARBLED_TENSOR, None)
    good = pb.ModelInferRequest(model_name="m").SerializeToString()
    assert pb.ModelInferResponse.FromString(await routed.unary_unary(good, None)).model_name == "m"
