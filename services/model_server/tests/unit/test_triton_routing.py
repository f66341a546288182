"""Triton's errors keep their code and message (the routing-field scan is tested with
modelserve_common.wire in libs/common/tests/test_wire.py)."""

from __future__ import annotations

import grpc

from modelserve_model_server.triton_replica import triton_error


def test_triton_error_keeps_code_and_message() -> None:
    class FakeRpcError(grpc.aio.AioRpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        err = triton_error(FakeRpcError(code, f"triton says {code.name}"))
        assert err.code is code and err.message == f"triton says {code.name}"
