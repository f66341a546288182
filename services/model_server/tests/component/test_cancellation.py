"""Cancellation over the wire with a slow plain (thread) Python model that records when each
predict() entered and left, per instance: a request whose caller gave up while predict() runs
keeps its instance until the thread returns (no two predict() calls overlap on one instance), and
requests whose deadline passed or whose caller cancelled while queued never reach predict()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from ms_test_repo import make_settings, write_model

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.server import running_server
from modelserve_model_server.stats import DROPPED

Input = pb.ModelInferRequest.InferInputTensor

RECORDING_PY = """
import time

class Model:
    def load(self):
        self.log = self.version_dir / "calls.log"

    def _note(self, what, tag):
        with open(self.log, "a") as f:
            f.write(f"{what} {id(self)} {tag} {time.monotonic()}\\n")

    def predict(self, inputs):
        tag = int(inputs["x"].reshape(-1)[0])
        self._note("enter", tag)
        time.sleep(1.0 if tag < 10 else 0.1)  # tags below 10 are the slow ones
        self._note("exit", tag)
        return {"y": inputs["x"]}
"""

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "x", data_type: TYPE_INT64, dims: [ 1 ] } ]
output [ { name: "y", data_type: TYPE_INT64, dims: [ 1 ] } ]
instance_group [ { count: %d } ]
"""


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[svc_grpc.GRPCInferenceServiceStub]:
    repo = tmp_path / "repo"
    write_model(repo, "recorder", CONFIG % 1, RECORDING_PY)
    write_model(repo, "recorder2", CONFIG % 2, RECORDING_PY)
    async with running_server(make_settings(repo)) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield svc_grpc.GRPCInferenceServiceStub(channel)


def request(model: str, tag: int) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Input(name="x", datatype="INT64", shape=[1])],
        raw_input_contents=[np.array([tag], np.int64).tobytes()],
    )


def calls(repo_model: Path) -> list[tuple[str, str, int, float]]:
    path = repo_model / "1" / "calls.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, inst, tag, at = line.split()
        out.append((what, inst, int(tag), float(at)))
    return out


def intervals(records: list[tuple[str, str, int, float]]) -> dict[str, list[tuple[float, float, int]]]:
    entered: dict[tuple[str, int], float] = {}
    per_instance: dict[str, list[tuple[float, float, int]]] = {}
    for what, inst, tag, at in records:
        if what == "enter":
            entered[(inst, tag)] = at
        else:
            per_instance.setdefault(inst, []).append((entered.pop((inst, tag)), at, tag))
    assert not entered, f"predict calls that never returned: {entered}"
    return per_instance


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_cancelled_request_keeps_its_instance_until_predict_returns(stub, tmp_path):
    folder = tmp_path / "repo" / "recorder2"  # two instances, one thread each
    # One instance is busy with a slow request whose caller gives up long before predict() returns.
    abandoned = stub.ModelInfer(request("recorder2", 1), timeout=10)
    await wait_for(lambda: bool(calls(folder)))
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await asyncio.sleep(0.05)  # the server has seen the cancellation
    # Quick requests arrive while that thread still runs: they must all go to the other instance
    # (had the cancelled request handed its instance back, one would run there, on the second
    # thread, as soon as the first quick one returned: two predict() calls on one instance).
    tags = list(range(10, 14))
    answers = await asyncio.gather(*(stub.ModelInfer(request("recorder2", t), timeout=10) for t in tags))
    assert [int(np.frombuffer(a.raw_output_contents[0], np.int64)[0]) for a in answers] == tags
    await wait_for(lambda: sum(1 for r in calls(folder) if r[0] == "exit") == 1 + len(tags))
    per_instance = intervals(calls(folder))
    for runs in per_instance.values():
        runs.sort()
        for (_, left, a), (entered, _, b) in zip(runs, runs[1:], strict=False):
            assert entered >= left, f"predict of {b} entered before predict of {a} on the same instance left"


async def test_expired_or_cancelled_queued_requests_never_reach_predict(stub, tmp_path):
    folder = tmp_path / "repo" / "recorder"
    before = {r: DROPPED.labels("recorder", "1", r).get() for r in ("cancelled", "deadline")}
    busy = asyncio.ensure_future(stub.ModelInfer(request("recorder", 1), timeout=10))
    await wait_for(lambda: bool(calls(folder)))
    expiring = [stub.ModelInfer(request("recorder", tag), timeout=0.1) for tag in range(100, 105)]
    cancelled = [stub.ModelInfer(request("recorder", tag), timeout=10) for tag in range(200, 203)]
    await asyncio.sleep(0.05)
    for call in cancelled:
        call.cancel()
    for call in expiring:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    for call in cancelled:
        with pytest.raises(asyncio.CancelledError):
            await call
    await busy
    after = await stub.ModelInfer(request("recorder", 50), timeout=10)
    assert np.frombuffer(after.raw_output_contents[0], np.int64).tolist() == [50]
    assert [tag for what, _, tag, _ in calls(folder) if what == "enter"] == [1, 50]
    dropped = sum(DROPPED.labels("recorder", "1", r).get() - before[r] for r in before)
    assert dropped == 8
    stats = (await stub.ModelStatistics(pb.ModelStatisticsRequest(name="recorder"), timeout=5)).model_stats
    assert stats[0].inference_stats.fail.count == 8
    assert stats[0].inference_stats.success.count == 2
