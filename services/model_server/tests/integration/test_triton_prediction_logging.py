"""Requests the model server forwards to a real tritonserver are prediction-logged like local ones
(issue 18): a registry (in-process, on SQLite) holds the Triton-backed model ``linear`` owned by
acme with a logging policy; the model server follows it and forwards to Triton. The owner's and a
trusted caller's requests are logged with the request and Triton's answer; another tenant's calls
to the shared model are not; a Triton error is logged with its message."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing.triton import TritonProcess
from modelserve_model_server.prediction_logger import PredictionLogger
from modelserve_model_server.server import running_server
from modelserve_registry.server import running_server as registry_server
from modelserve_registry.settings import RegistrySettings

pytestmark = pytest.mark.integration

W = np.random.RandomState(0).randn(16, 4).astype(np.float32)  # the weights of triton_repo/linear
ACME = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "read,write,infer"))
GLOBEX = (("x-modelserve-tenant", "globex"), ("x-modelserve-scopes", "read,write,infer"))


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _request(x: np.ndarray, rid: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="linear", id=rid)
    req.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req


async def _logs(registry: reg_grpc.RegistryServiceStub) -> list[reg_pb.PredictionLog]:
    page = await registry.ListPredictionLogs(
        reg_pb.ListPredictionLogsRequest(model="linear", page_size=100), metadata=ACME
    )
    return list(page.logs)


async def test_requests_forwarded_to_triton_are_logged_like_local_ones(
    triton: TritonProcess, model_server_settings: Any, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    artifact = sources / "linear.tar"  # Triton serves the model from its own repository
    artifact.write_bytes(b"served by triton")
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
        reg = await stack.enter_async_context(registry_server(reg_settings))
        rch = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}"))
        registry = reg_grpc.RegistryServiceStub(rch)
        for tenant in ("acme", "globex"):
            await registry.CreateTenant(reg_pb.CreateTenantRequest(tenant=reg_pb.Tenant(name=tenant)))
        await registry.CreateModel(
            reg_pb.CreateModelRequest(model=reg_pb.Model(name="linear")), metadata=ACME
        )
        version = reg_pb.ModelVersion(
            artifact_uri=artifact.as_uri(),
            artifact_sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
            backend="triton",
        )
        await registry.CreateModelVersion(
            reg_pb.CreateModelVersionRequest(model="linear", model_version=version), metadata=ACME
        )
        policy = reg_pb.PredictionLogging(sample_ratio=1.0, log_request=True, log_response=True)
        deployment = reg_pb.Deployment(
            model="linear",
            targets=[reg_pb.DeploymentTarget(version="1", weight=100)],
            prediction_logging=policy,
        )
        await registry.UpdateDeployment(reg_pb.UpdateDeploymentRequest(deployment=deployment), metadata=ACME)

        settings = model_server_settings(
            triton.target,
            registry_url=f"127.0.0.1:{reg.port}",
            registry_artifact_dir=tmp_path / "staged",
            artifact_roots=str(sources),
            prediction_log_flush_interval_s=0.05,
        )
        running = await stack.enter_async_context(running_server(settings))
        head = await registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await running.extra["follower"].wait_for_revision(head.revision, timeout_s=20)
        ich = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        infer = svc_grpc.GRPCInferenceServiceStub(ich)
        logger: PredictionLogger = running.extra["prediction_logger"]

        xs = [np.random.RandomState(i).randn(2, 16).astype(np.float32) for i in range(5)]
        for i, x in enumerate(xs):
            reply = await infer.ModelInfer(_request(x, f"r{i}"), metadata=ACME if i < 4 else (), timeout=10)
            y = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(2, 4)
            np.testing.assert_allclose(y, x @ W, rtol=1e-5)
        await eventually(lambda: logger.counts["written"] == 5)
        stored = sorted(await _logs(registry), key=lambda r: r.time.ToNanoseconds())
        assert len(stored) == 5
        for record, x in zip(stored, xs, strict=True):
            assert (record.model, record.version, record.tenant, record.error) == ("linear", 1, "acme", "")
            assert [t.name for t in record.inputs] == ["x"] and list(record.inputs[0].shape) == [2, 16]
            assert np.frombuffer(record.inputs[0].raw_contents, np.float32).tolist() == x.ravel().tolist()
            y = np.frombuffer(record.outputs[0].raw_contents, np.float32).reshape(2, 4)
            np.testing.assert_allclose(y, x @ W, rtol=1e-5)

        # Triton refuses a request: the caller gets Triton's error, the record carries it (under
        # the version Triton last answered with: the request names none)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await infer.ModelInfer(_request(np.zeros((1, 15), np.float32), "bad"), metadata=ACME, timeout=10)
        await eventually(lambda: logger.counts["written"] == 6)
        failed = [r for r in await _logs(registry) if r.error]
        assert len(failed) == 1 and failed[0].request_id
        assert refused.value.details() and refused.value.details()[:40] in failed[0].error
        assert not failed[0].outputs

        # shared with every tenant: globex's calls are answered but not logged (acme reads the logs)
        await registry.UpdateModel(
            reg_pb.UpdateModelRequest(
                model=reg_pb.Model(name="linear", shared=True), update_mask={"paths": ["shared"]}
            )
        )
        head = await registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await running.extra["follower"].wait_for_revision(head.revision, timeout_s=20)
        await eventually(lambda: running.extra["ownership"].visible("linear", "globex"))
        sampled = logger.counts["sampled"]
        for i in range(5):
            await infer.ModelInfer(_request(xs[0], f"g{i}"), metadata=GLOBEX, timeout=10)
        assert logger.counts["sampled"] == sampled
