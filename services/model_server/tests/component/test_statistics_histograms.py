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
    # Every request took at least one batch (0.3 s): each is in a bucket above 0.25 s.
    assert at_least(st.success_histogram, 250_000_000) == 5
    # Each event is in the bucket its duration falls in: the recorded total lies between the sums
    # of the buckets' lower and upper bounds (how long the queued ones waited depends on when they
    # reached the server, which a loaded machine decides, so no fixed figure is asserted).
    for h, d in (
        (st.success_histogram, st.inference_stats.success),
        (st.queue_histogram, st.inference_stats.queue),
    ):
        assert within_buckets(h, d.ns), (list(h.counts), d.ns)


def within_buckets(h: pb.DurationHistogram, total_ns: int) -> bool:
    """Whether ``total_ns`` can be the sum of the events counted in ``h`` (bucket i holds
    (bounds[i-1], bounds[i]]; the last has no upper bound)."""
    lower = [0, *h.bounds_ns]
    upper = [*h.bounds_ns, None]
    low = sum(lo * c for lo, c in zip(lower, h.counts, strict=True))
    if total_ns < low:
        return False
    if h.counts[-1]:
        return True
    return total_ns <= sum(hi * c for hi, c in zip(upper[:-1], h.counts[:-1], strict=True))
