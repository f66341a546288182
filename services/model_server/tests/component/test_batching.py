"""Dynamic batching over the wire, with the `slow` test model (0.3 s per batch, one instance, queue
of 4, two priority levels): batches form while the instance is busy, a full queue rejects at once,
a request whose timeout expires in the queue or whose caller cancels never runs, priority 1 goes
first."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb

Input = pb.ModelInferRequest.InferInputTensor


def tag_request(tag: int, **params: pb.InferParameter) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="slow",
        id=f"t{tag}",
        inputs=[Input(name="x", datatype="INT64", shape=[1, 1])],
        raw_input_contents=[np.array([[tag]], np.int64).tobytes()],
        parameters=params,
    )


def ran(server) -> list[list[int]]:
    path = server.repo / "slow" / "1" / "ran.log"
    return [[int(v) for v in line.split()] for line in path.read_text().splitlines()] if path.exists() else []


async def start_busy(server) -> asyncio.Task:
    first = asyncio.ensure_future(server.stub.ModelInfer(tag_request(100)))
    for _ in range(100):
        if ran(server):
            return first
        await asyncio.sleep(0.005)
    raise AssertionError("the first request never started")


async def test_batching_requests_queued_while_busy_run_as_one_batch(server):
    first = await start_busy(server)
    rest = [asyncio.ensure_future(server.stub.ModelInfer(tag_request(t))) for t in (1, 2, 3, 4)]
    responses = await asyncio.gather(first, *rest)
    for resp, tag in zip(responses, (100, 1, 2, 3, 4), strict=True):
        assert resp.id == f"t{tag}"
        assert np.frombuffer(resp.raw_output_contents[0], np.int64).tolist() == [tag * 10]
    # one batch of the four (in the order they reached the server: four concurrent calls on one
    # channel may arrive in any order)
    batches = ran(server)
    assert batches[0] == [100] and len(batches) == 2 and sorted(batches[1]) == [1, 2, 3, 4]
    stats = (await server.stub.ModelStatistics(pb.ModelStatisticsRequest(name="slow"))).model_stats[0]
    assert {b.batch_size: b.compute_infer.count for b in stats.batch_stats} == {1: 1, 4: 1}
    assert (stats.inference_count, stats.execution_count) == (5, 2)
    assert stats.inference_stats.success.count == 5
    assert stats.inference_stats.queue.count == 5 and stats.inference_stats.queue.ns > 0


async def test_batching_full_queue_is_resource_exhausted_at_once(server):
    first = await start_busy(server)
    queued = [asyncio.ensure_future(server.stub.ModelInfer(tag_request(t))) for t in (1, 2, 3, 4)]
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(tag_request(5))
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_queue_size 4" in exc.value.details()
    assert loop.time() - t0 < 0.4  # did not wait for the busy instance (busy for 0.6 s)
    await asyncio.gather(first, *queued)
    assert 5 not in sum(ran(server), [])


async def test_batching_timeout_expired_in_queue_is_deadline_exceeded_and_never_runs(server):
    first = await start_busy(server)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await server.stub.ModelInfer(tag_request(7, timeout=pb.InferParameter(int64_param=50_000)))
    assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "50000 us" in exc.value.details() and "not run" in exc.value.details()
    await first
    await asyncio.sleep(0.05)
    assert ran(server) == [[100]]


async def test_batching_cancelled_while_queued_is_never_run(server):
    first = await start_busy(server)
    call = server.stub.ModelInfer(tag_request(8))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    after = await server.stub.ModelInfer(tag_request(9))  # queued behind; runs after the first
    await first
    assert after.id == "t9"
    assert ran(server) == [[100], [9]]


async def test_batching_priority_one_is_taken_before_the_default_level(server):
    first = await start_busy(server)
    low = [asyncio.ensure_future(server.stub.ModelInfer(tag_request(t))) for t in (1, 2)]
    await asyncio.sleep(0.02)
    high = asyncio.ensure_future(
        server.stub.ModelInfer(tag_request(3, priority=pb.InferParameter(uint64_param=1)))
    )
    await asyncio.gather(first, high, *low)
    assert ran(server) == [[100], [3, 1, 2]]
