"""Prediction logging end to end inside the platform (issue 18): a real registry (in-process, on
SQLite) and the model server following it. The deployment's policy is followed over Watch; the
sampled share of 400 requests lands in the registry (readable by the owning tenant only); with
the registry gone, inference keeps answering and the records are dropped and counted."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import numpy as np
from ms_test_repo import make_settings

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_model_server.prediction_logger import PredictionLogger
from modelserve_model_server.server import running_server
from modelserve_registry.server import running_server as registry_server
from modelserve_registry.settings import RegistrySettings

MODEL_PY = """
import numpy as np

class Model:
    async def predict(self, inputs):
        return {"y": inputs["x"] * np.float32(2)}
"""
SPEC = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 2])
OUT = tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 2])
ACME = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "read,write,infer"))
GLOBEX = (("x-modelserve-tenant", "globex"), ("x-modelserve-scopes", "read,write,infer"))


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _request(i: int) -> pb.ModelInferRequest:
    x = np.array([[i, -i]], np.float32)
    return pb.ModelInferRequest(
        model_name="logged",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[x.tobytes()],
    )


async def _register_and_deploy(registry: reg_grpc.RegistryServiceStub, sources: Path) -> None:
    path = sources / "logged.py"
    path.write_text(textwrap.dedent(MODEL_PY))
    for tenant in ("acme", "globex"):
        created = reg_pb.Tenant(name=tenant, code_execution_allowed=True)  # a python model runs code
        await registry.CreateTenant(reg_pb.CreateTenantRequest(tenant=created))
    await registry.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name="logged")), metadata=ACME)
    version = reg_pb.ModelVersion(
        artifact_uri=path.as_uri(),
        artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        backend="python",
        inputs=[SPEC],
        outputs=[OUT],
    )
    await registry.CreateModelVersion(
        reg_pb.CreateModelVersionRequest(model="logged", model_version=version), metadata=ACME
    )
    policy = reg_pb.PredictionLogging(sample_ratio=0.5, log_request=True, log_response=True)
    deployment = reg_pb.Deployment(
        model="logged", targets=[reg_pb.DeploymentTarget(version="1", weight=100)], prediction_logging=policy
    )
    await registry.UpdateDeployment(reg_pb.UpdateDeploymentRequest(deployment=deployment), metadata=ACME)


async def test_sampled_requests_reach_the_registry_and_an_outage_never_fails_inference(
    tmp_path: Path,
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (tmp_path / "repo").mkdir()
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
    async with AsyncExitStack() as outer:
        registry_stack = AsyncExitStack()
        await outer.enter_async_context(registry_stack)
        reg = await registry_stack.enter_async_context(registry_server(reg_settings))
        rch = await registry_stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}"))
        registry = reg_grpc.RegistryServiceStub(rch)
        settings = make_settings(
            tmp_path / "repo",
            load_models="",
            registry_url=f"127.0.0.1:{reg.port}",
            registry_artifact_dir=tmp_path / "staged",
            artifact_roots=str(sources),
            registry_backoff_min_s=0.05,
            registry_backoff_max_s=0.3,
            prediction_log_flush_interval_s=0.05,
            prediction_log_batch_size=50,
            prediction_log_max_attempts=2,
            prediction_log_retry_backoff_s=0.01,
            prediction_log_write_timeout_s=2.0,
        )
        running = await outer.enter_async_context(running_server(settings))
        ich = await outer.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        infer = svc_grpc.GRPCInferenceServiceStub(ich)
        logger: PredictionLogger = running.extra["prediction_logger"]

        await _register_and_deploy(registry, sources)
        head = await registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await running.extra["follower"].wait_for_revision(head.revision, timeout_s=20)

        for i in range(400):
            reply = await infer.ModelInfer(_request(i), metadata=ACME)
            assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [2 * i, -2 * i]
        sampled = logger.counts["sampled"]
        assert 120 <= sampled <= 280  # 0.5 of 400: mean 200, sd 10
        await eventually(lambda: logger.counts["written"] == sampled)

        stored: list[reg_pb.PredictionLog] = []
        token = ""
        while True:
            page = await registry.ListPredictionLogs(
                reg_pb.ListPredictionLogsRequest(model="logged", page_size=100, page_token=token),
                metadata=ACME,
            )
            stored += page.logs
            token = page.next_page_token
            if not token:
                break
        assert len(stored) == sampled
        one = stored[0]
        x = np.frombuffer(one.inputs[0].raw_contents, np.float32)
        y = np.frombuffer(one.outputs[0].raw_contents, np.float32)
        assert (one.tenant, one.version) == ("acme", 1) and (y == 2 * x).all()
        hidden = await _code(
            registry.ListPredictionLogs(reg_pb.ListPredictionLogsRequest(model="logged"), metadata=GLOBEX)
        )
        assert hidden == grpc.StatusCode.NOT_FOUND

        # shared with every tenant: globex may call it, but its requests are not logged (acme reads the logs)
        await registry.UpdateModel(
            reg_pb.UpdateModelRequest(
                model=reg_pb.Model(name="logged", shared=True), update_mask={"paths": ["shared"]}
            )
        )
        head = await registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await running.extra["follower"].wait_for_revision(head.revision, timeout_s=20)
        await eventually(lambda: running.extra["ownership"].visible("logged", "globex"))
        for i in range(40):
            await infer.ModelInfer(_request(i), metadata=GLOBEX)
        assert logger.counts["sampled"] == sampled

        # the registry goes away: the served model keeps answering, records are dropped and counted
        await registry_stack.aclose()
        before = logger.counts["sink_unavailable"]
        for i in range(40):
            reply = await infer.ModelInfer(_request(i), metadata=ACME)
            assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [2 * i, -2 * i]
        lost = logger.counts["sampled"] - sampled
        assert lost > 0
        await eventually(
            lambda: logger.counts["sink_unavailable"] - before + logger.counts["queue_full"] == lost
        )


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    raise AssertionError("the call succeeded")
