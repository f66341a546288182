"""The front door's error answer inside a ModelStreamInfer stream (proxy.stream_error) is always
buildable, whatever bytes the request held, and echoes the request's model name, version and id
when they are readable. The wire scanner itself is tested in libs/common/tests/test_wire.py."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve_gateway.proxy_relay import stream_error


def _request(name: str = "add", version: str = "3", rid: str = "r-1") -> bytes:
    req = inf_pb.ModelInferRequest(model_name=name, model_version=version, id=rid)
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    req.raw_input_contents.append(b"\x00" * 16)
    return req.SerializeToString()


def test_stream_error_echoes_the_routing_fields() -> None:
    answer = inf_pb.ModelStreamInferResponse.FromString(stream_error("model 'add' not found", _request()))
    assert answer.error_message == "model 'add' not found"
    r = answer.infer_response
    assert (r.model_name, r.model_version, r.id) == ("add", "3", "r-1")


def test_stream_error_for_malformed_bytes_has_empty_fields() -> None:
    answer = inf_pb.ModelStreamInferResponse.FromString(stream_error("bad", b"\x0a\x05ab"))
    assert answer.error_message == "bad"
    assert answer.infer_response == inf_pb.ModelInferResponse()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_stream_error_is_always_buildable(raw: bytes) -> None:
    inf_pb.ModelStreamInferResponse.FromString(stream_error("model 'x' not found", raw))
