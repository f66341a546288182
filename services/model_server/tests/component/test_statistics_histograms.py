"""The statistics' duration histograms (ModelStatistics.success_histogram and queue_histogram, a
ModelServe extension the console reads percentiles from), with the `slow` test model (0.3 s per
batch, one instance): every request is counted once, in the bucket its duration falls in."""

from __future__ import annotations

import asyncio

import numpy as np

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server.stats import HISTOGRAM_BOUNDS_NS

Input = pb.ModelInferRequest.InferInputTensor


def request(tag: int) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="slow",
        inputs=[Input(name="x", datatype="INT64", shape=[1, 1])],
        raw_input_contents=[np.array([[tag]], np.int64).tobytes()],
    )


def at_least(h: pb.DurationHistogram, ns: int) -> int:
    """Events in buckets whose lower bound is at least ``ns``."""
    lower = [0, *h.bounds_ns]
    return sum(c for lo, c in zip(lower, h.counts, strict=True) if lo >= ns)


async def test_histograms_count_each_request_in_its_bucket(server) -> None:
    first = asyncio.ensure_future(server.stub.ModelInfer(request(100)))
    ran = server.repo / "slow" / "1" / "ran.log"
    for _ in range(200):
        if ran.exists() and ran.read_text():
            break
        await asyncio.sleep(0.005)
    queued = [asyncio.ensure_future(server.stub.ModelInfer(request(t))) for t in (1, 2, 3, 4)]
    await asyncio.gather(first, *queued)

    st = (await server.stub.ModelStatistics(pb.ModelStatisticsRequest(name="slow"))).model_stats[0]
    for h in (st.success_histogram, st.queue_histogram):
        assert list(h.bounds_ns) == list(HISTOGRAM_BOUNDS_NS)
        assert len(h.counts) == len(h.bounds_ns) + 1
    assert sum(st.success_histogram.counts) == st.inference_stats.success.count == 5
    assert sum(st.queue_histogram.counts) == st.inference_stats.queue.count == 5
    # Every request took at least one batch (0.3 s); the four queued ones waited for the first
    # batch, so at least ~0.3 s less the time it took to send them (the bucket below 0.25 s).
    assert at_least(st.success_histogram, 250_000_000) == 5
    assert at_least(st.queue_histogram, 150_000_000) >= 4
