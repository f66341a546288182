"""The gRPC front door: every fronted method proxied as bytes, with metadata and deadlines."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from gwtest.v1 import template_service_pb2 as tpl_pb
from gwtest.v1 import template_service_pb2_grpc as tpl_grpc

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc
from modelserve_common.wire import infer_routing
from modelserve_gateway.proxy_relay import with_version

CLIENTS = Path(__file__).parent.parent / "clients"


def _add_request(version: str = "") -> inf_pb.ModelInferRequest:
    a = np.ones(3, dtype=np.float32).tobytes()
    req = inf_pb.ModelInferRequest(model_name="add", model_version=version)
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[3])
    req.inputs.add(name="INPUT1", datatype="FP32", shape=[3])
    req.raw_input_contents.extend([a, a])
    return req


def test_infer_routing_and_with_version_edit_bytes_without_decoding() -> None:
    req = _add_request("1")
    raw = req.SerializeToString()
    routing = infer_routing(raw)
    assert (routing.model_name, routing.model_version) == ("add", "1")
    edited = inf_pb.ModelInferRequest.FromString(with_version(raw, "2" * 200))
    assert edited.model_version == "2" * 200 and edited.raw_input_contents == req.raw_input_contents


async def test_unary_infer_through_front_door(gateway, inference) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as ch:
        stub = inf_grpc.GRPCInferenceServiceStub(ch)
        call = stub.ModelInfer(
            _add_request("2"), metadata=[("x-custom", "v"), ("x-request-id", "rid-9")], timeout=5
        )
        resp = await call
        assert np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).tolist() == [2, 2, 2]
        assert resp.model_version == "2"
        trailing = dict(await call.trailing_metadata())
        assert trailing["x-request-id"] == "rid-9"
    assert inference.last_metadata["x-custom"] == "v"
    assert inference.last_metadata["x-request-id"] == "rid-9"


async def test_errors_deadlines_and_streams_pass_through(gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as ch:
        stub = tpl_grpc.TemplateServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Fail(tpl_pb.FailRequest(code=5), timeout=5)
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND and exc.value.details() == "failed with 5"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Fail(tpl_pb.FailRequest(delay_ms=1000), timeout=0.2)
        assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        got = [m.i async for m in stub.Count(tpl_pb.CountRequest(n=4), timeout=5)]
        assert got == [0, 1, 2, 3]
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            async for _ in stub.Count(tpl_pb.CountRequest(n=4, fail_after=2), timeout=5):
                pass
        assert exc.value.code() is grpc.StatusCode.INTERNAL
        inf = inf_grpc.GRPCInferenceServiceStub(ch)

        async def reqs():
            for _ in range(3):
                yield _add_request()

        replies = [r async for r in inf.ModelStreamInfer(reqs(), timeout=5)]
        assert len(replies) == 3 and all(r.infer_response.model_name == "add" for r in replies)
        # Unknown method: UNIMPLEMENTED from gRPC itself.
        unknown = ch.unary_unary("/gwtest.v1.TemplateService/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await unknown(b"", timeout=5)
        assert exc.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_tritonclient_grpc_through_front_door(gateway) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENTS / "triton_grpc_client.py"),
        gateway.grpc_target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out.decode(), err.decode()[-3000:])
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["ok"] and "StatusCode.NOT_FOUND" in result["error"]
