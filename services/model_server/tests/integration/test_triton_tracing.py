"""Triton's own spans join the model server's trace (issue 18): a real tritonserver runs in
OpenTelemetry trace mode (rate 1, level TIMESTAMPS) exporting over OTLP/HTTP to a real receiver
started by the test (``OtlpHttpReceiver``); the model server (in-process, tracing into memory)
forwards ModelInfer with the W3C ``traceparent`` of its span in the gRPC metadata. Triton's spans
(InferRequest -> the model -> compute) land in the same trace, InferRequest a child of the model
server's span, whether the client sent a traceparent or the model server started the trace."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry import trace

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_common.testing import memory_tracing
from modelserve_common.testing.tracing import OtlpHttpReceiver, ReceivedSpan
from modelserve_common.testing.triton import TritonProcess, opentelemetry_args, pytriton_dist
from modelserve_model_server.server import running_server

pytestmark = pytest.mark.integration

TRITON_REPO = Path(__file__).parent / "triton_repo"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced_triton() -> Iterator[tuple[TritonProcess, OtlpHttpReceiver]]:
    if pytriton_dist() is None:
        pytest.skip("nvidia-pytriton (tritonserver) not installed")
    with OtlpHttpReceiver() as receiver:
        proc = TritonProcess(TRITON_REPO, models=("linear",), extra_args=opentelemetry_args(receiver.url))
        proc.start()
        try:
            yield proc, receiver
        finally:
            proc.stop()
            shutil.rmtree(proc.workdir, ignore_errors=True)


def _request() -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 16])
    req.raw_input_contents.append(np.ones((1, 16), np.float32).tobytes())
    return req


def _triton_spans(receiver: OtlpHttpReceiver, trace_id: str) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 30
    while True:
        found = [s for s in receiver.trace(trace_id) if s.service == "triton"]
        if len(found) >= 3 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


async def test_triton_spans_are_children_of_the_model_server_span(
    traced_triton: tuple[TritonProcess, OtlpHttpReceiver], model_server_settings: Any
) -> None:
    triton, receiver = traced_triton
    provider, exporter = memory_tracing()
    settings = model_server_settings(triton.target)
    async with running_server(settings, tracer_provider=provider) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = svc_grpc.GRPCInferenceServiceStub(ch)
            traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
            await stub.ModelInfer(_request(), metadata=[("traceparent", traceparent)], timeout=10)
            call = stub.ModelInfer(_request(), timeout=10)  # no traceparent: the model server starts one
            await call
            started = dict(await call.trailing_metadata())["x-trace-id"]
    provider.force_flush()
    ours = exporter.get_finished_spans()

    for trace_id, root_parent in ((CLIENT_TRACE, CLIENT_SPAN), (started, None)):
        ms_spans = {
            trace.format_span_id(s.context.span_id): s
            for s in ours
            if trace.format_trace_id(s.context.trace_id) == trace_id
        }
        assert ms_spans, f"no model server span in trace {trace_id}"
        if root_parent is not None:  # the model server's server span is the client's child
            assert any(
                s.parent and trace.format_span_id(s.parent.span_id) == root_parent for s in ms_spans.values()
            )
        spans = _triton_spans(receiver, trace_id)
        by_name = {s.name: s for s in spans}
        assert {"InferRequest", "linear", "compute"} <= set(by_name), [s.name for s in spans]
        request_span = by_name["InferRequest"]
        assert request_span.parent_id in ms_spans, (request_span.parent_id, list(ms_spans))
        assert ms_spans[request_span.parent_id].name.endswith("ModelInfer")
        assert by_name["linear"].parent_id == request_span.span_id
        assert by_name["compute"].parent_id == by_name["linear"].span_id
        assert by_name["linear"].attributes["triton.model_name"] == "linear"
        assert "COMPUTE_START" in by_name["compute"].events
