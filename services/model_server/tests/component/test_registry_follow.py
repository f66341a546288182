"""The model server follows a real registry (in-process, on SQLite): deployed versions are loaded
and served, a wrong sha256 marks the version FAILED while the old one keeps serving, undeploy
unloads, aliases resolve, versionless requests follow the weights, and the follower catches up
after a registry restart."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ms_test_repo import make_settings

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.server import RunningServer
from modelserve_common.testing.launcher import free_port
from modelserve_model_server.registry_follower import RegistryFollower
from modelserve_model_server.server import running_server
from modelserve_registry.server import running_server as registry_server
from modelserve_registry.settings import RegistrySettings

# y = x + version (the version the backend loaded it as), so every answer names who computed it.
MODEL_PY = """
import asyncio
import numpy as np

class Model:
    async def load(self):
        await asyncio.sleep({load_delay})

    async def predict(self, inputs):
        return {{"y": inputs["x"] + np.float32(self.version)}}
"""

SPEC = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 2])
OUT = tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 2])


def registry_settings(data_dir: Path, port: int = 0) -> RegistrySettings:
    return RegistrySettings(
        grpc_port=port,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        data_dir=data_dir,
        artifact_roots=str(data_dir.parent / "sources"),
        watch_poll_interval_s=0.1,
        watch_progress_interval_s=1.0,
        shutdown_grace_s=0.2,
        access_log=False,
    )


@dataclass
class Suite:
    registry: reg_grpc.RegistryServiceStub
    infer: svc_grpc.GRPCInferenceServiceStub
    health: health_pb2_grpc.HealthStub
    running: RunningServer
    follower: RegistryFollower
    sources: Path

    async def synced(self) -> None:
        """Waits until the follower has applied every change committed so far."""
        head = await self.registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await self.follower.wait_for_revision(head.revision, timeout_s=10)

    async def answer(self, model: str, version: str = "") -> tuple[str, float]:
        """(the version that answered, y[0][0] for x = 0)."""
        x = np.zeros((1, 2), np.float32)
        reply = await self.infer.ModelInfer(
            pb.ModelInferRequest(
                model_name=model,
                model_version=version,
                inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
                raw_input_contents=[x.tobytes()],
            )
        )
        y = np.frombuffer(reply.raw_output_contents[0], np.float32)
        return reply.model_version, float(y[0])

    def artifact(self, name: str, load_delay: float = 0.0) -> tuple[str, str]:
        """A single-file Python model artifact: (file:// URI, sha256)."""
        path = self.sources / f"{name}.py"
        path.write_text(textwrap.dedent(MODEL_PY.format(load_delay=load_delay)))
        return f"file://{path}", hashlib.sha256(path.read_bytes()).hexdigest()

    async def register(self, model: str, *, sha: str | None = None, load_delay: float = 0.0) -> int:
        uri, digest = self.artifact(f"{model}-{len(list(self.sources.iterdir()))}", load_delay)
        with_model = await self.registry.ListModels(reg_pb.ListModelsRequest())
        if model not in [m.name for m in with_model.models]:
            await self.registry.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name=model)))
        created = await self.registry.CreateModelVersion(
            reg_pb.CreateModelVersionRequest(
                model=model,
                model_version=reg_pb.ModelVersion(
                    artifact_uri=uri,
                    artifact_sha256=sha or digest,
                    backend="python",
                    inputs=[SPEC],
                    outputs=[OUT],
                    batching=reg_pb.BatchingConfig(max_batch_size=8),
                ),
            )
        )
        return int(created.model_version.version)

    async def deploy(self, model: str, *targets: tuple[str, int]) -> None:
        await self.registry.UpdateDeployment(
            reg_pb.UpdateDeploymentRequest(
                deployment=reg_pb.Deployment(
                    model=model,
                    targets=[reg_pb.DeploymentTarget(version=v, weight=w) for v, w in targets],
                )
            )
        )

    async def version(self, model: str, version: int) -> reg_pb.ModelVersion:
        got = await self.registry.GetModelVersion(
            reg_pb.GetModelVersionRequest(model=model, version=str(version))
        )
        return got.model_version

    async def ready(self) -> bool:
        return (await self.infer.ServerReady(pb.ServerReadyRequest())).ready


@asynccontextmanager
async def model_server(registry_url: str, tmp: Path) -> AsyncIterator[RunningServer]:
    (tmp / "repo").mkdir(exist_ok=True)
    settings = make_settings(
        tmp / "repo",
        load_models="",
        registry_url=registry_url,
        registry_artifact_dir=tmp / "staged",
        artifact_roots=str(tmp / "sources"),
        registry_backoff_min_s=0.05,
        registry_backoff_max_s=0.3,
    )
    async with running_server(settings) as running:
        yield running


@asynccontextmanager
async def suite_on(tmp: Path, registry_port: int = 0) -> AsyncIterator[Suite]:
    sources = tmp / "sources"
    sources.mkdir(exist_ok=True)
    async with AsyncExitStack() as stack:
        reg = await stack.enter_async_context(registry_server(registry_settings(tmp / "reg", registry_port)))
        rch = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}"))
        running = await stack.enter_async_context(model_server(f"127.0.0.1:{reg.port}", tmp))
        ich = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        yield Suite(
            registry=reg_grpc.RegistryServiceStub(rch),
            infer=svc_grpc.GRPCInferenceServiceStub(ich),
            health=health_pb2_grpc.HealthStub(ich),
            running=running,
            follower=running.extra["follower"],
            sources=sources,
        )


@pytest.fixture
async def suite(tmp_path: Path) -> AsyncIterator[Suite]:
    async with suite_on(tmp_path) as s:
        await s.synced()
        yield s


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            result = await check()
            if result:
                return result
        except (AssertionError, grpc.aio.AioRpcError):
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: {check}")
        await asyncio.sleep(0.05)


async def test_follower_new_deployment_is_loaded_served_and_marked_ready(suite: Suite) -> None:
    v1 = await suite.register("adder")
    await suite.deploy("adder", ("1", 100))
    await suite.synced()
    assert await suite.answer("adder") == ("1", 1.0)
    assert (await suite.version("adder", v1)).status == reg_pb.ModelVersion.STATUS_READY
    v2 = await suite.register("adder")
    await suite.deploy("adder", ("2", 100))
    await suite.synced()
    assert await suite.answer("adder") == ("2", 2.0)
    assert v2 == 2
    # version 1 is no longer deployed: unloaded once version 2 serves
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await suite.answer("adder", "1")
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    assert await suite.ready()


async def test_follower_wrong_sha256_marks_failed_and_old_version_keeps_serving(suite: Suite) -> None:
    await suite.register("adder")
    await suite.deploy("adder", ("1", 100))
    await suite.synced()
    bad = await suite.register("adder", sha="0" * 64)
    await suite.deploy("adder", (str(bad), 100))
    await suite.synced()
    record = await suite.version("adder", bad)
    assert record.status == reg_pb.ModelVersion.STATUS_FAILED
    assert "sha256 mismatch" in record.status_message and "0" * 64 in record.status_message
    assert await suite.answer("adder") == ("1", 1.0)  # the previous version keeps serving
    assert await suite.answer("adder", "1") == ("1", 1.0)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await suite.answer("adder", str(bad))
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    staged = suite.running.extra["manager"]
    assert sorted(staged.loaded_versions("adder")) == [1]


async def test_follower_load_failure_marks_failed_with_reason(suite: Suite) -> None:
    path = suite.sources / "broken.py"
    path.write_text("raise RuntimeError('cannot import this model')\n")
    await suite.registry.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name="broken")))
    await suite.registry.CreateModelVersion(
        reg_pb.CreateModelVersionRequest(
            model="broken",
            model_version=reg_pb.ModelVersion(
                artifact_uri=f"file://{path}",
                artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                backend="python",
                inputs=[SPEC],
                outputs=[OUT],
                batching=reg_pb.BatchingConfig(max_batch_size=8),
            ),
        )
    )
    await suite.deploy("broken", ("1", 100))
    await suite.synced()
    record = await suite.version("broken", 1)
    assert record.status == reg_pb.ModelVersion.STATUS_FAILED
    assert "cannot import this model" in record.status_message
    # per-model failure isolation: the server stays ready (strict_readiness=False, the default)
    assert await suite.ready()
    assert suite.running.extra["manager"].failures() == {("broken", 1): record.status_message}


async def test_follower_undeploy_unloads(suite: Suite) -> None:
    await suite.register("adder")
    await suite.deploy("adder", ("1", 100))
    await suite.synced()
    assert await suite.answer("adder") == ("1", 1.0)
    await suite.deploy("adder")  # no targets: undeployed
    await suite.synced()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await suite.answer("adder")
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    ready = await suite.infer.ModelReady(pb.ModelReadyRequest(name="adder"))
    assert not ready.ready


async def test_follower_aliases_resolve_and_follow_moves(suite: Suite) -> None:
    for _ in range(2):
        await suite.register("adder")
    await suite.deploy("adder", ("1", 50), ("2", 50))
    await suite.registry.SetAlias(reg_pb.SetAliasRequest(model="adder", alias="production", version="1"))
    await suite.synced()
    assert await suite.answer("adder", "production") == ("1", 1.0)
    await suite.registry.SetAlias(reg_pb.SetAliasRequest(model="adder", alias="production", version="2"))
    await suite.synced()
    assert await suite.answer("adder", "production") == ("2", 2.0)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await suite.answer("adder", "staging")
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND and "no alias 'staging'" in (
        exc.value.details() or ""
    )
    assert await suite.answer("adder", "1") == ("1", 1.0)  # explicit numbers still work


async def test_follower_versionless_requests_follow_weights(suite: Suite) -> None:
    for _ in range(2):
        await suite.register("adder")
    await suite.deploy("adder", ("1", 90), ("2", 10))
    await suite.synced()
    counts: Counter[str] = Counter()
    for _ in range(10):
        answers = await asyncio.gather(*(suite.answer("adder") for _ in range(100)))
        counts.update(v for v, _ in answers)
    # 1,000 draws at p = 0.1: mean 100, sd 9.5; 60..140 is beyond 4 sd on both sides
    assert 60 <= counts["2"] <= 140 and counts["1"] + counts["2"] == 1000, counts
    assert await suite.answer("adder", "2") == ("2", 2.0)


async def test_follower_not_ready_until_deployments_loaded(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    async with registry_server(registry_settings(tmp_path / "reg")) as reg:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}") as rch:
            pre = Suite(reg_grpc.RegistryServiceStub(rch), None, None, reg, None, sources)  # type: ignore[arg-type]
            await pre.register("slow", load_delay=1.0)
            await pre.deploy("slow", ("1", 100))
            async with model_server(f"127.0.0.1:{reg.port}", tmp_path) as running:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ich:
                    infer = svc_grpc.GRPCInferenceServiceStub(ich)
                    health = health_pb2_grpc.HealthStub(ich)
                    assert not (await infer.ServerReady(pb.ServerReadyRequest())).ready
                    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
                    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING

                    async def ready() -> bool:
                        return bool((await infer.ServerReady(pb.ServerReadyRequest())).ready)

                    await eventually(ready)
                    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
                    assert check.status == health_pb2.HealthCheckResponse.SERVING


async def test_follower_survives_registry_restart_and_catches_up(tmp_path: Path) -> None:
    port = free_port()
    async with AsyncExitStack() as outer:
        sources = tmp_path / "sources"
        sources.mkdir()
        reg_cm = registry_server(registry_settings(tmp_path / "reg", port))
        reg = await reg_cm.__aenter__()
        rch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        admin = Suite(reg_grpc.RegistryServiceStub(rch), None, None, reg, None, sources)  # type: ignore[arg-type]
        await admin.register("adder")
        await admin.register("adder")
        await admin.deploy("adder", ("1", 100))
        running = await outer.enter_async_context(model_server(f"127.0.0.1:{port}", tmp_path))
        ich = await outer.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        s = Suite(
            admin.registry,
            svc_grpc.GRPCInferenceServiceStub(ich),
            None,
            running,
            running.extra["follower"],
            sources,
        )  # type: ignore[arg-type]
        await s.synced()
        assert await s.answer("adder") == ("1", 1.0)
        await s.synced()  # the follower's own READY mark is a change too
        before = s.follower.revision
        await rch.close()
        await reg_cm.__aexit__(None, None, None)

        # While the follower cannot reach it, the registry (same database, another port) changes.
        async with registry_server(registry_settings(tmp_path / "reg")) as other:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as och:
                side = Suite(reg_grpc.RegistryServiceStub(och), None, None, other, None, sources)  # type: ignore[arg-type]
                await side.deploy("adder", ("2", 100))
                await side.registry.SetAlias(
                    reg_pb.SetAliasRequest(model="adder", alias="production", version="1")
                )
        assert s.follower.revision == before
        assert await s.answer("adder") == ("1", 1.0)  # keeps serving while the registry is away

        async with registry_server(registry_settings(tmp_path / "reg", port)):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as rch2:
                s.registry = reg_grpc.RegistryServiceStub(rch2)
                await s.synced()
                assert s.follower.revision is not None and before is not None
                assert s.follower.revision > before
                assert await s.answer("adder") == ("2", 2.0)
                # alias 'production' (set while disconnected) names version 1, which is no
                # longer deployed here
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await s.answer("adder", "production")
                assert exc.value.code() is grpc.StatusCode.NOT_FOUND
                assert "points at version 1" in (exc.value.details() or "")


async def test_follower_batching_override_change_reloads_version(suite: Suite) -> None:
    await suite.register("adder")
    await suite.deploy("adder", ("1", 100))
    await suite.synced()
    cfg = await suite.infer.ModelConfig(pb.ModelConfigRequest(name="adder"))
    assert cfg.config.max_batch_size == 8 and list(cfg.config.input[0].dims) == [2]
    await suite.registry.UpdateDeployment(
        reg_pb.UpdateDeploymentRequest(
            deployment=reg_pb.Deployment(
                model="adder",
                targets=[reg_pb.DeploymentTarget(version="1", weight=100)],
                batching_overrides=reg_pb.BatchingConfig(max_batch_size=32, max_queue_delay_us=500),
            )
        )
    )
    await suite.synced()
    cfg = await suite.infer.ModelConfig(pb.ModelConfigRequest(name="adder"))
    assert cfg.config.max_batch_size == 32
    assert cfg.config.dynamic_batching.max_queue_delay_microseconds == 500
    assert await suite.answer("adder") == ("1", 1.0)


async def test_follower_mirror_target_gets_a_copy_of_versionless_traffic(suite: Suite) -> None:
    for _ in range(2):
        await suite.register("adder")
    await suite.registry.UpdateDeployment(
        reg_pb.UpdateDeploymentRequest(
            deployment=reg_pb.Deployment(
                model="adder",
                targets=[
                    reg_pb.DeploymentTarget(version="1", weight=100),
                    reg_pb.DeploymentTarget(version="2", weight=0, mirror=True),
                ],
            )
        )
    )
    await suite.synced()
    for _ in range(20):
        assert await suite.answer("adder") == ("1", 1.0)  # answers come from the served version
    assert await suite.answer("adder", "1") == ("1", 1.0)  # explicit versions are not mirrored

    async def mirrored() -> bool:
        stats = await suite.infer.ModelStatistics(pb.ModelStatisticsRequest(name="adder", version="2"))
        return stats.model_stats[0].inference_stats.success.count == 20

    await eventually(mirrored)
