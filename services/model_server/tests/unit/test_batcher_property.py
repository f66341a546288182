"""The batcher as a property: for random arrival patterns, row counts, priorities, instance counts
and queue delays, every response equals the unbatched result of its own request, and batches never
exceed max_batch_size or mix shapes. The model is an in-memory fake of the LoadedModel protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Decoded
from modelserve_model_server.config import spec_from_config
from modelserve_model_server.stats import ModelStats


class FakeModel:
    """y = x * 3 + 1 row-wise, summed over the row's width (so row identity matters); records batches."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.batches: list[tuple[int, tuple[int, ...]]] = []
        self.running = 0
        self.max_running = 0

    async def execute(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.batches.append((x.shape[0], x.shape[1:]))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            return {"y": x * 3 + 1, "s": x.sum(axis=1)}
        finally:
            self.running -= 1

    async def unload(self) -> None:
        return None


def make_spec(max_batch: int, instances: int, delay_us: int, preferred: list[int]):
    cfg = config_pb.ModelConfig(backend="python", max_batch_size=max_batch)
    cfg.input.add(name="x", data_type=config_pb.TYPE_FP32, dims=[-1])
    cfg.output.add(name="y", data_type=config_pb.TYPE_FP32, dims=[-1])
    cfg.output.add(name="s", data_type=config_pb.TYPE_FP32, dims=[])
    cfg.dynamic_batching.max_queue_delay_microseconds = delay_us
    cfg.dynamic_batching.preferred_batch_size.extend([p for p in preferred if p <= max_batch])
    cfg.dynamic_batching.priority_levels = 3
    cfg.dynamic_batching.default_priority_level = 2
    cfg.instance_group.add(count=instances)
    return spec_from_config(cfg, name="prop")


MERGED: list[bool] = []

request_st = st.tuples(
    st.integers(0, 3),  # wait before sending, in 0.5 ms steps
    st.integers(1, 4),  # rows
    st.sampled_from([2, 3]),  # width (non-batch dim): different widths must never share a batch
    st.integers(0, 3),  # priority (0 = default)
    st.sampled_from([(), ("y",), ("s",), ("s", "y")]),  # requested outputs
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(request_st, min_size=1, max_size=25),
    max_batch=st.integers(4, 8),
    instances=st.integers(1, 3),
    delay_us=st.sampled_from([0, 300, 2000]),
    preferred=st.lists(st.integers(1, 8), max_size=2),
)
def test_batcher_every_response_matches_its_unbatched_result(
    requests, max_batch, instances, delay_us, preferred
):
    async def scenario() -> None:
        spec = make_spec(max_batch, instances, delay_us, preferred)
        model = FakeModel(delay=0.001)
        sched = Scheduler(spec, "1", model, ModelStats("prop", "1"))

        async def one(i: int, wait: int, rows: int, width: int, priority: int, outputs: tuple[str, ...]):
            await asyncio.sleep(wait * 0.0005)
            x = (np.arange(rows * width, dtype=np.float32).reshape(rows, width) + 100 * i).astype(np.float32)
            d = Decoded(inputs={"x": x}, rows=rows, outputs=outputs, raw=True, signature=("x", (width,)))
            out = await sched.submit(d, priority)
            for name in outputs or ("y", "s"):
                want = {"y": x * 3 + 1, "s": x.sum(axis=1)}[name]
                assert np.array_equal(out[name], want), (i, name)

        await asyncio.gather(*(one(i, *r) for i, r in enumerate(requests)))
        assert model.max_running <= instances
        for rows, _shape in model.batches:
            assert rows <= max_batch
        assert sum(r for r, _ in model.batches) == sum(r[1] for r in requests)
        assert sched.depth == 0
        MERGED.append(len(model.batches) < len(requests))

    asyncio.run(scenario())


def test_batcher_property_examples_did_batch():
    """Guards the property above against vacuity: some examples must have merged requests."""
    test_batcher_every_response_matches_its_unbatched_result()
    assert any(MERGED)
