"""The prediction logger (issue 18) over an in-memory sink: the sampling ratio holds over 10,000
requests, batches are bounded, a full queue and a sink outage drop and count without touching the
inference's answer, records carry typed contents as raw bytes and respect the size cap."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.errors import InvalidArgument
from modelserve_model_server.prediction_logger import CALLER_TENANT, PredictionLogger, Sampler, build_record

N = 10_000


class MemorySink:
    def __init__(self) -> None:
        self.batches: list[list[registry_pb.PredictionLog]] = []
        self.failing = False
        self.calls = 0

    async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
        self.calls += 1
        if self.failing:
            raise ConnectionError("registry unreachable")
        self.batches.append(list(records))

    @property
    def records(self) -> list[registry_pb.PredictionLog]:
        return [r for b in self.batches for r in b]


def _request(x: float = 1.0) -> pb.ModelInferRequest:
    t = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])
    return pb.ModelInferRequest(
        model_name="m", inputs=[t], raw_input_contents=[np.array([[x, x]], np.float32).tobytes()]
    )


def _response() -> pb.ModelInferResponse:
    out = pb.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[1])
    out.contents.fp32_contents.extend([3.5])
    return pb.ModelInferResponse(model_name="m", outputs=[out])


async def _answer() -> pb.ModelInferResponse:
    return _response()


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _policy(ratio: float, **kw: object) -> registry_pb.PredictionLogging:
    return registry_pb.PredictionLogging(sample_ratio=ratio, log_request=True, log_response=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5, 0.9])
def test_sampler_ratio_holds_over_10000_requests(ratio: float) -> None:
    sampler = Sampler(random.Random(1234))
    hits = sum(sampler.sample(ratio) for _ in range(N))
    sd = (N * ratio * (1 - ratio)) ** 0.5
    assert abs(hits - N * ratio) <= 4 * sd, (hits, ratio)


def test_sampler_edges() -> None:
    sampler = Sampler(random.Random(1))
    assert not any(sampler.sample(0.0) for _ in range(1000))
    assert all(sampler.sample(1.0) for _ in range(1000))


async def test_logger_samples_by_policy_and_writes_bounded_batches() -> None:
    sink = MemorySink()
    policies = {"m": (_policy(0.2), "acme")}
    logger = PredictionLogger(
        sink, policies.get, batch_size=64, flush_interval_s=0.05, sampler=Sampler(random.Random(7))
    )
    logger.start()
    try:
        for _ in range(N):
            assert await logger.observe("m", 3, _request(), _answer()) == _response()
        # not deployed / no policy: never logged
        await logger.observe("other", 1, _request(), _answer())
        sampled = logger.counts["sampled"]
        assert abs(sampled - N * 0.2) <= 4 * (N * 0.2 * 0.8) ** 0.5
        await eventually(lambda: logger.counts["written"] == sampled)
    finally:
        await logger.close()
    assert len(sink.records) == sampled and all(len(b) <= 64 for b in sink.batches)
    first = sink.records[0]
    assert (first.model, first.version) == ("m", 3)
    assert np.frombuffer(first.inputs[0].raw_contents, np.float32).tolist() == [1.0, 1.0]
    assert np.frombuffer(first.outputs[0].raw_contents, np.float32).tolist() == [3.5]  # typed contents


async def test_sink_outage_drops_and_counts_without_failing_inference() -> None:
    sink = MemorySink()
    sink.failing = True
    logger = PredictionLogger(
        sink,
        {"m": (_policy(1.0), "acme")}.get,
        batch_size=10,
        flush_interval_s=0.01,
        max_attempts=3,
        retry_backoff_s=0.0,
    )
    logger.start()
    try:
        for _ in range(50):
            assert await logger.observe("m", 1, _request(), _answer()) == _response()
        await eventually(lambda: logger.counts["sink_unavailable"] == 50)
        assert logger.counts["written"] == 0 and sink.calls >= 5 * 3  # every batch tried 3 times
        sink.failing = False  # the registry is back: logging resumes
        await logger.observe("m", 1, _request(), _answer())
        await eventually(lambda: logger.counts["written"] == 1)
    finally:
        await logger.close()


async def test_full_queue_drops_and_counts_and_a_stuck_sink_never_blocks_inference() -> None:
    stuck = asyncio.Event()

    class StuckSink:
        async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
            await stuck.wait()

    logger = PredictionLogger(StuckSink(), {"m": (_policy(1.0), "acme")}.get, queue_size=5, batch_size=1)
    logger.start()
    try:
        for _ in range(100):
            await asyncio.wait_for(logger.observe("m", 1, _request(), _answer()), 10)
        # one record is held by the stuck writer, five wait in the queue; the rest are dropped
        assert logger.counts["queue_full"] >= 100 - 6
        assert logger.queued <= 5
    finally:
        stuck.set()
        await logger.close()


async def test_failed_inference_is_logged_with_its_error_and_still_raises() -> None:
    sink = MemorySink()
    logger = PredictionLogger(sink, {"m": (_policy(1.0), "acme")}.get, flush_interval_s=0.01)

    async def failing() -> pb.ModelInferResponse:
        raise InvalidArgument("input 'x': wrong shape")

    logger.start()
    try:
        with pytest.raises(InvalidArgument):
            await logger.observe("m", 1, _request(), failing())
        await eventually(lambda: len(sink.records) == 1)
    finally:
        await logger.close()
    assert sink.records[0].error == "input 'x': wrong shape" and not sink.records[0].outputs


async def test_only_the_owner_and_trusted_callers_are_logged() -> None:
    """A shared model's logs are read by its owner: other tenants' requests are never logged."""
    sink = MemorySink()
    logger = PredictionLogger(sink, {"m": (_policy(1.0), "acme")}.get, flush_interval_s=0.01)
    logger.start()
    try:
        for caller in ("globex", "acme", None):

            async def call(tenant: str | None = caller) -> None:
                CALLER_TENANT.set(tenant)
                assert await logger.observe("m", 1, _request(), _answer()) == _response()

            await asyncio.create_task(call())
        await eventually(lambda: len(sink.records) == 2)
    finally:
        await logger.close()
    assert logger.counts["sampled"] == 2


def test_record_size_cap_keeps_datatype_and_shape_only() -> None:
    big = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1000])
    request = pb.ModelInferRequest(inputs=[big], raw_input_contents=[bytes(4000)])
    capped = build_record(_policy(1.0, max_record_bytes=100), 64 * 1024, "m", 1, request, _response(), "")
    assert (capped.inputs[0].datatype, list(capped.inputs[0].shape)) == ("FP32", [1000])
    assert capped.inputs[0].raw_contents == b""
    assert np.frombuffer(capped.outputs[0].raw_contents, np.float32).tolist() == [3.5]  # small: kept
    typed = pb.ModelInferRequest.InferInputTensor(name="t", datatype="INT64", shape=[100])
    typed.contents.int64_contents.extend(range(100))  # 800 bytes as raw
    over = build_record(
        _policy(1.0, max_record_bytes=799), 0, "m", 1, pb.ModelInferRequest(inputs=[typed]), None, ""
    )
    assert over.inputs[0].raw_contents == b""
    under = build_record(
        _policy(1.0, max_record_bytes=800), 0, "m", 1, pb.ModelInferRequest(inputs=[typed]), None, ""
    )
    assert np.frombuffer(under.inputs[0].raw_contents, "<i8").tolist() == list(range(100))
    kept = build_record(_policy(1.0), 64 * 1024, "m", 1, request, _response(), "")  # 0: the default cap
    assert len(kept.inputs[0].raw_contents) == 4000
    only_request = build_record(
        registry_pb.PredictionLogging(sample_ratio=1, log_request=True),
        1024,
        "m",
        1,
        _request(),
        _response(),
        "",
    )
    assert only_request.inputs and not only_request.outputs
    long_id = build_record(_policy(1.0), 1024, "m", 1, pb.ModelInferRequest(id="i" * 10_000), None, "")
    assert len(long_id.request_id) == 1024  # a client's huge id never makes the registry refuse a batch
