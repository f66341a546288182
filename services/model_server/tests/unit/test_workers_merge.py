"""workers.merge_statistics: the ModelStatistics of several workers summed per model version."""

from __future__ import annotations

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server.stats import ModelStats
from modelserve_model_server.workers import merge_statistics, without_shared


def _worker(requests: int, batch: int, queue_ns: int, last_ms: int) -> pb.ModelStatisticsResponse:
    stats = ModelStats("m", "1")
    for _ in range(requests):
        stats.success.add(1_000_000)
        stats.queue.add(queue_ns)
    stats.batch(batch, 10, 20, 30)
    stats.last_inference_ms = last_ms
    other = ModelStats("only-here", "2")
    other.fail.add(5)
    return pb.ModelStatisticsResponse(model_stats=[stats.to_pb(), other.to_pb()])


def test_counts_durations_histograms_and_batches_add_up() -> None:
    merged = merge_statistics([_worker(3, 4, 50_000, 100), _worker(5, 2, 50_000, 200)])
    by_name = {s.name: s for s in merged.model_stats}
    m = by_name["m"]
    assert m.inference_stats.success.count == 8
    assert m.inference_stats.success.ns == 8_000_000
    assert m.inference_stats.queue.count == 8
    assert m.inference_count == 6 and m.execution_count == 2
    assert m.last_inference == 200
    assert [b.batch_size for b in m.batch_stats] == [2, 4]
    assert all(b.compute_infer.count == 1 and b.compute_infer.ns == 20 for b in m.batch_stats)
    if m.HasField("success_histogram"):  # the histograms add bucket by bucket
        assert sum(m.success_histogram.counts) == 8
        assert sum(m.queue_histogram.counts) == 8
    assert by_name["only-here"].inference_stats.fail.count == 2


def test_one_answer_is_unchanged() -> None:
    one = _worker(2, 1, 1_000, 7)
    assert merge_statistics([one]) == one


def test_same_batch_size_on_both_workers_is_one_entry() -> None:
    merged = merge_statistics([_worker(1, 4, 1, 1), _worker(1, 4, 1, 2)])
    (m,) = [s for s in merged.model_stats if s.name == "m"]
    (b,) = m.batch_stats
    assert b.batch_size == 4 and b.compute_input.count == 2 and b.compute_output.ns == 60


def test_models_served_through_triton_are_counted_once() -> None:
    """Every worker answers Triton's own figures for a Triton-served model: only the asked
    worker's copy is kept, so the sum does not count each request once per worker."""
    mine, sibling = _worker(3, 1, 1, 1), _worker(3, 1, 1, 1)
    triton = ModelStats("on-triton", "1")
    triton.success.add(7)
    for answer in (mine, sibling):
        answer.model_stats.append(triton.to_pb())
    merged = merge_statistics([mine, without_shared(sibling, lambda name: name == "on-triton")])
    by_name = {s.name: s for s in merged.model_stats}
    assert by_name["on-triton"].inference_stats.success.count == 1
    assert by_name["m"].inference_stats.success.count == 6  # local models still add up
    assert without_shared(sibling, lambda name: False) is sibling
