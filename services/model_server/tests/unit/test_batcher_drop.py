"""The batcher never starts a request whose caller left or whose deadline passed while it was
queued, including in the race where the caller's task was cancelled but has not run again yet, and
an instance is not handed to the next batch before the model's work on it stopped. The model is an
in-memory fake of the LoadedModel protocol; the real thread-backed backend is tested in
tests/component/test_cancellation.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Decoded
from modelserve_model_server.config import spec_from_config
from modelserve_model_server.errors import ModelFailed, ModelRejectedInput, RequestExpired
from modelserve_model_server.stats import DROPPED, ModelStats


class GatedModel:
    """Each batch waits for ``gate``; records the first value of every batch it ran."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.ran: list[int] = []
        self.error: BaseException | None = None

    async def execute(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.ran.extend(int(v) for v in x[:, 0])
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {"y": x}

    async def unload(self) -> None:
        return None


def scheduler(name: str, model: GatedModel) -> tuple[Scheduler, ModelStats]:
    cfg = config_pb.ModelConfig(backend="python", max_batch_size=8)
    cfg.input.add(name="x", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.output.add(name="y", data_type=config_pb.TYPE_INT64, dims=[1])
    cfg.dynamic_batching.SetInParent()
    cfg.instance_group.add(count=1)
    spec = spec_from_config(cfg, name=name)
    stats = ModelStats(name, "1")
    return Scheduler(spec, "1", model, stats), stats


def req(tag: int) -> Decoded:
    return Decoded(
        inputs={"x": np.array([[tag]], dtype=np.int64)}, rows=1, outputs=(), raw=True, signature=("x", (1,))
    )


def dropped(name: str, reason: str) -> float:
    return DROPPED.labels(name, "1", reason).get()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_cancelled_while_queued_never_starts_even_when_an_instance_frees_first():
    model = GatedModel()
    sched, _ = scheduler("drop_cancel", model)
    first = asyncio.ensure_future(sched.submit(req(1)))
    await settle()
    queued = [asyncio.ensure_future(sched.submit(req(tag))) for tag in (2, 3, 4)]
    await settle()
    assert sched.depth == 3
    # The instance frees up and the callers leave in the same turn of the loop: the first batch's
    # wake-up runs before the cancelled tasks run again, so the batcher sees them still queued
    # (only their futures are cancelled). They must not start.
    model.gate.set()
    for task in queued[:2]:
        task.cancel()
    assert (await first)["y"].tolist() == [[1]]
    assert (await queued[2])["y"].tolist() == [[4]]
    for task in queued[:2]:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert model.ran == [1, 4]
    assert sched.depth == 0
    assert dropped("drop_cancel", "cancelled") == 2


async def test_deadline_passed_while_queued_never_starts():
    model = GatedModel()
    sched, _ = scheduler("drop_deadline", model)
    first = asyncio.ensure_future(sched.submit(req(1)))
    await settle()
    late = asyncio.ensure_future(sched.submit(req(2), deadline_s=0.05))
    patient = asyncio.ensure_future(sched.submit(req(3), deadline_s=30.0))
    await asyncio.sleep(0.1)  # the first deadline passes while the instance is busy
    model.gate.set()
    await first
    with pytest.raises(RequestExpired, match="deadline .* passed before it started"):
        await late
    assert (await patient)["y"].tolist() == [[3]]
    assert model.ran == [1, 3]
    assert dropped("drop_deadline", "deadline") == 1


async def test_no_time_left_is_refused_without_running():
    model = GatedModel()
    sched, _ = scheduler("drop_zero", model)
    model.gate.set()
    with pytest.raises(RequestExpired):
        await sched.submit(req(1), deadline_s=0.0)
    assert model.ran == []
    assert dropped("drop_zero", "deadline") == 1


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            ModelRejectedInput,
            "model 'errs' rejected the input: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff",
        ),
        (TypeError("bad"), ModelRejectedInput, "model 'errs' rejected the input: TypeError: bad"),
        (KeyError("k"), ModelFailed, "model 'errs' version 1 failed: KeyError: 'k'"),
    ],
)
async def test_model_exceptions_name_the_model(error, kind, message):
    model = GatedModel()
    sched, _ = scheduler("errs", model)
    model.error = error
    model.gate.set()
    with pytest.raises(kind) as caught:
        await sched.submit(req(1))
    assert caught.value.message.startswith(message)


async def test_model_exception_message_is_bounded():
    model = GatedModel()
    sched, _ = scheduler("errs_long", model)
    model.error = ValueError("x" * 100_000)
    model.gate.set()
    with pytest.raises(ModelRejectedInput) as caught:
        await sched.submit(req(1))
    assert len(caught.value.message) < 700
    assert caught.value.message.endswith("(100000 characters)")
