"""Prediction-log sinks besides the registry (issue 18): a real registry (in-process, on SQLite), the
model server following it with MODEL_SERVER_PREDICTION_LOG_SINKS=registry,jsonl,cloudevents, and a
real HTTP receiver (aiohttp, in the test) for the CloudEvents. Checks the JSON-lines content and its
bounded rotation, the CloudEvents attributes and data, and that a CloudEvents outage drops and
counts only that sink's records while inference and the other sinks go on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from ms_test_repo import make_settings

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_model_server.prediction_logger import PredictionLogger
from modelserve_model_server.prediction_sinks import CloudEventsSink
from modelserve_model_server.server import running_server
from modelserve_model_server.settings import ModelServerSettings
from modelserve_registry.server import running_server as registry_server
from modelserve_registry.settings import RegistrySettings

MODEL_PY = """
import numpy as np

class Model:
    async def predict(self, inputs):
        return {"y": inputs["x"] * np.float32(2)}
"""
ACME = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "read,write,infer"))
SOURCE = "/tests/model_server"


class Receiver:
    """A tiny CloudEvents HTTP endpoint: records each POST's content type and JSON body; answers
    ``status``."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.status = 202
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.headers.get("content-type", ""), json.loads(await request.read())))
        return web.Response(status=self.status)

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ctype, body in self.posts:
            out.extend(body if isinstance(body, list) else [body])
        return out


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/events", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/events"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _request(i: int) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="logged",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[np.array([[i, -i]], np.float32).tobytes()],
    )


def _floats(tensor: dict[str, Any]) -> list[float]:
    values: list[float] = np.frombuffer(base64.b64decode(tensor["raw_contents"]), np.float32).tolist()
    return values


async def _deploy(registry: reg_grpc.RegistryServiceStub, sources: Path) -> None:
    path = sources / "logged.py"
    path.write_text(textwrap.dedent(MODEL_PY))
    await registry.CreateTenant(
        reg_pb.CreateTenantRequest(tenant=reg_pb.Tenant(name="acme", code_execution_allowed=True))
    )
    await registry.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name="logged")), metadata=ACME)
    spec = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 2])
    out = tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 2])
    version = reg_pb.ModelVersion(
        artifact_uri=path.as_uri(),
        artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        backend="python",
        inputs=[spec],
        outputs=[out],
    )
    await registry.CreateModelVersion(
        reg_pb.CreateModelVersionRequest(model="logged", model_version=version), metadata=ACME
    )
    policy = reg_pb.PredictionLogging(sample_ratio=1.0, log_request=True, log_response=True)
    deployment = reg_pb.Deployment(
        model="logged", targets=[reg_pb.DeploymentTarget(version="1", weight=100)], prediction_logging=policy
    )
    await registry.UpdateDeployment(reg_pb.UpdateDeploymentRequest(deployment=deployment), metadata=ACME)


async def test_jsonl_and_cloudevents_sinks_beside_the_registry(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (tmp_path / "repo").mkdir()
    jsonl = tmp_path / "logs" / "predictions.jsonl"
    reg_settings = RegistrySettings(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        data_dir=tmp_path / "reg",
        artifact_roots=str(sources),
        watch_poll_interval_s=0.1,
        shutdown_grace_s=0.2,
        access_log=False,
    )
    async with AsyncExitStack() as stack:
        events = await stack.enter_async_context(receiver())
        reg = await stack.enter_async_context(registry_server(reg_settings))
        rch = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}"))
        registry = reg_grpc.RegistryServiceStub(rch)
        settings = make_settings(
            tmp_path / "repo",
            load_models="",
            registry_url=f"127.0.0.1:{reg.port}",
            registry_artifact_dir=tmp_path / "staged",
            artifact_roots=str(sources),
            prediction_log_sinks="registry,jsonl,cloudevents",
            prediction_log_jsonl_path=jsonl,
            prediction_log_jsonl_max_bytes=4096,
            prediction_log_jsonl_backups=2,
            prediction_log_cloudevents_url=events.url,
            prediction_log_cloudevents_source=SOURCE,
            prediction_log_flush_interval_s=0.05,
            prediction_log_batch_size=20,
            prediction_log_max_attempts=2,
            prediction_log_retry_backoff_s=0.01,
        )
        running = await stack.enter_async_context(running_server(settings))
        ich = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        infer = svc_grpc.GRPCInferenceServiceStub(ich)
        logger: PredictionLogger = running.extra["prediction_logger"]
        await _deploy(registry, sources)
        head = await registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await running.extra["follower"].wait_for_revision(head.revision, timeout_s=20)

        n = 60
        for i in range(n):
            await infer.ModelInfer(_request(i), metadata=ACME)
        sinks = logger.sink_counts
        await eventually(lambda: all(sinks[s]["written"] == n for s in ("registry", "jsonl", "cloudevents")))

        # JSON-lines: rotated before a file passes 4096 bytes, two backups kept, the newest lines last
        files = [jsonl, jsonl.with_name("predictions.jsonl.1"), jsonl.with_name("predictions.jsonl.2")]
        assert all(f.exists() and 0 < f.stat().st_size <= 4096 for f in files)
        assert not jsonl.with_name("predictions.jsonl.3").exists()
        lines = [json.loads(line) for f in reversed(files) for line in f.read_text().splitlines()]
        assert 0 < len(lines) < n  # the oldest were rotated out: the files are bounded
        first = n - len(lines)
        for k, record in enumerate(lines):
            i = first + k
            assert (record["model"], record["version"], record["tenant"], record["error"]) == (
                "logged",
                1,
                "acme",
                "",
            )
            assert record["inputs"][0]["shape"] == [1, 2] and _floats(record["inputs"][0]) == [i, -i]
            assert _floats(record["outputs"][0]) == [2 * i, -2 * i]
            datetime.fromisoformat(record["time"])

        # CloudEvents: structured batches, every attribute, the record as data
        assert {ctype for ctype, _ in events.posts} == {"application/cloudevents-batch+json; charset=utf-8"}
        got = events.events()
        assert len(got) == n and len({e["id"] for e in got}) == n
        for i, event in enumerate(got):
            assert event["specversion"] == "1.0"
            assert event["source"] == SOURCE
            assert event["type"] == "io.modelserve.prediction_log.v1"
            assert event["datacontenttype"] == "application/json"
            assert event["subject"] == "logged/1"
            datetime.fromisoformat(event["time"])
            data = event["data"]
            assert (data["model"], data["version"], data["tenant"]) == ("logged", 1, "acme")
            assert _floats(data["inputs"][0]) == [i, -i] and _floats(data["outputs"][0]) == [2 * i, -2 * i]
            assert event["time"] == data["time"]

        # the CloudEvents endpoint fails: inference answers, only that sink drops (and counts)
        events.status = 503
        for i in range(10):
            reply = await infer.ModelInfer(_request(i), metadata=ACME)
            assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [2 * i, -2 * i]
        await eventually(lambda: sinks["cloudevents"]["sink_unavailable"] == 10)
        await eventually(
            lambda: sinks["registry"]["written"] == n + 10 and sinks["jsonl"]["written"] == n + 10
        )
        assert sinks["cloudevents"]["written"] == n
        assert len(events.events()) >= n + 10  # each batch tried twice, none counted written


async def test_cloudevents_one_event_per_post_and_the_same_ids_on_a_retry() -> None:
    async with receiver() as events:
        sink = CloudEventsSink(events.url, source=SOURCE, batched=False, timeout_s=5.0)
        ts = Timestamp()
        ts.FromJsonString("2026-12-02T00:00:00.5Z")
        records = [
            reg_pb.PredictionLog(model="m", version=3, request_id=f"r{i}", time=ts, tenant="acme")
            for i in range(3)
        ]
        try:
            await sink.write(records)
            await sink.write(records)
            events.status = 500
            with pytest.raises(RuntimeError, match="HTTP 500"):
                await sink.write(records[:1])
        finally:
            await sink.aclose()
    assert [ctype for ctype, _ in events.posts] == ["application/cloudevents+json; charset=utf-8"] * 7
    first, again = [e["id"] for e in events.events()[:3]], [e["id"] for e in events.events()[3:6]]
    assert first == again and len(set(first)) == 3  # a retried batch repeats its ids
    one = events.events()[0]
    assert one["time"] == "2026-12-02T00:00:00.500Z" and one["subject"] == "m/3"
    assert one["data"]["request_id"] == "r0" and one["data"]["inputs"] == []


def test_sink_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown prediction log sinks"):
        ModelServerSettings(prediction_log_sinks="registry,kafka")
    with pytest.raises(ValueError, match="name at least one prediction log sink"):
        ModelServerSettings(prediction_log_sinks=" , ")
    with pytest.raises(ValueError, match="set prediction_log_cloudevents_url"):
        ModelServerSettings(prediction_log_sinks="cloudevents")
    with pytest.raises(ValueError, match="prediction_log_cloudevents_source"):
        ModelServerSettings(prediction_log_cloudevents_source="")
    both = ModelServerSettings(prediction_log_sinks=" jsonl, registry,jsonl", data_dir=tmp_path)
    assert both.prediction_log_sink_names() == ["jsonl", "registry"]
    assert both.prediction_log_jsonl_file() == tmp_path / "prediction-logs" / "predictions.jsonl"
    # workers: each process rotates only its own file
    worker = ModelServerSettings(prediction_log_sinks="jsonl", data_dir=tmp_path, workers=2, worker_index=1)
    assert worker.prediction_log_jsonl_file() == tmp_path / "prediction-logs" / "predictions.worker1.jsonl"
    named = ModelServerSettings(prediction_log_jsonl_path=tmp_path / "p.log", workers=3, worker_index=2)
    assert named.prediction_log_jsonl_file() == tmp_path / "p.worker2.log"
