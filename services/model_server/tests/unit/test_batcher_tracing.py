"""The batcher records, tracing on, the batch each request rode in: every caller's span gets a
``model.batch`` event (batch size, its queue time, model, version); the batch's ``model.compute``
span is the first caller's child and links to the other callers' spans; queued requests have a
``model.queue`` span under their caller's span. The model is an in-memory fake held by a gate, so
the batch is formed deterministically."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from opentelemetry import trace

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.testing import memory_tracing
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Decoded
from modelserve_model_server.config import spec_from_config
from modelserve_model_server.stats import ModelStats


class GatedModel:
    """Each batch waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def execute(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        await self.gate.wait()
        return {"y": inputs["x"]}

    async def unload(self) -> None:
        return None


def req(tag: int) -> Decoded:
    return Decoded(
        inputs={"x": np.array([[tag]], dtype=np.int64)}, rows=1, outputs=(), raw=True, signature=("x", (1,))
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_each_caller_span_records_the_batch_it_rode_in() -> None:
    provider, exported = memory_tracing()
    tracer = provider.get_tracer("t")
    cfg = config_pb.ModelConfig(backend="python", max_batch_size=8)
    cfg.input.add(name="x", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.output.add(name="y", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.dynamic_batching.SetInParent()
    cfg.instance_group.add(count=1)
    model = GatedModel()
    sched = Scheduler(spec_from_config(cfg, name="traced"), "1", model, ModelStats("traced", "1"), tracer)

    async def call(tag: int) -> None:
        with tracer.start_as_current_span(f"caller-{tag}"):
            await sched.submit(req(tag))

    first = asyncio.ensure_future(call(1))  # runs alone, holding the only instance
    await settle()
    queued = [asyncio.ensure_future(call(tag)) for tag in (2, 3, 4)]
    await settle()
    assert sched.depth == 3
    model.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), 10)

    spans = {s.name: s for s in exported.get_finished_spans() if s.name.startswith("caller-")}
    computes = [s for s in exported.get_finished_spans() if s.name == "model.compute"]
    queues = [s for s in exported.get_finished_spans() if s.name == "model.queue"]
    assert sorted(c.attributes["batch_size"] for c in computes) == [1, 3]  # type: ignore[index]
    for name, size in (("caller-1", 1), ("caller-2", 3), ("caller-3", 3), ("caller-4", 3)):
        (event,) = [e for e in spans[name].events if e.name == "model.batch"]
        assert event.attributes is not None
        assert event.attributes["batch_size"] == size
        assert event.attributes["model"] == "traced" and event.attributes["version"] == "1"
        assert event.attributes["queue_time_ms"] >= 0  # type: ignore[operator]
    (batch,) = [c for c in computes if c.attributes["batch_size"] == 3]  # type: ignore[index]
    members = {spans[n].context.span_id for n in ("caller-2", "caller-3", "caller-4")}
    assert batch.parent is not None and batch.parent.span_id in members
    linked = {link.context.span_id for link in batch.links}
    assert linked | {batch.parent.span_id} == members and batch.parent.span_id not in linked
    assert {q.parent.span_id for q in queues if q.parent} == members
    assert all(trace.format_trace_id(q.context.trace_id) for q in queues)


async def test_unsampled_requests_cost_no_batcher_spans() -> None:
    provider, exported = memory_tracing()
    cfg = config_pb.ModelConfig(backend="python", max_batch_size=8)
    cfg.input.add(name="x", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.output.add(name="y", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.dynamic_batching.SetInParent()
    cfg.instance_group.add(count=1)
    model = GatedModel()
    sched = Scheduler(
        spec_from_config(cfg, name="unsampled"),
        "1",
        model,
        ModelStats("unsampled", "1"),
        provider.get_tracer("t"),
    )
    calls = [asyncio.ensure_future(sched.submit(req(tag))) for tag in (1, 2, 3)]  # no sampled span
    await settle()
    model.gate.set()
    await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert exported.get_finished_spans() == ()
