"""The model server's trust boundary against a real registry (in-process, on SQLite):

- per-model failure isolation: one broken deployment among three leaves the server SERVING and the
  two others answering; the broken version is FAILED in the registry with its reason, counted in
  the failed-models gauge, and recovers when its deployment is fixed; MODEL_SERVER_STRICT_READINESS
  keeps the old all-or-nothing readiness;
- artifact roots: an artifact outside MODEL_SERVER_ARTIFACT_ROOTS (or linking out of them) is
  FAILED naming the rule, and the reason says nothing about the file (existence, size, digest);
- ownership from the registry: a tenant sees its own and shared deployments only;
- code confinement: a local Python model whose folder links out of the roots is refused before
  anything of it is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ms_test_repo import make_settings, write_model
from prometheus_client import REGISTRY

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.context import TENANT_HEADER
from modelserve_common.server import RunningServer
from modelserve_model_server.errors import ModelLoadFailed
from modelserve_model_server.registry_follower import RegistryFollower
from modelserve_model_server.server import running_server
from modelserve_registry.server import running_server as registry_server
from modelserve_registry.settings import RegistrySettings

# y = x + version; load() fails while the file named by NEEDS does not exist.
MODEL_PY = """
import os
import numpy as np

NEEDS = {needs!r}

class Model:
    def load(self):
        if NEEDS and not os.path.exists(NEEDS):
            raise RuntimeError("dependency file is missing")

    async def predict(self, inputs):
        return {{"y": inputs["x"] + np.float32(self.version)}}
"""
SPEC = tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 2])
OUT = tensor_pb.TensorSpec(name="y", datatype="FP32", shape=[-1, 2])
PLAIN_PY = "class Model:\n    async def predict(self, inputs):\n        return {}\n"
FAILED = reg_pb.ModelVersion.STATUS_FAILED
READY = reg_pb.ModelVersion.STATUS_READY


@dataclass
class Suite:
    registry: reg_grpc.RegistryServiceStub
    infer: svc_grpc.GRPCInferenceServiceStub
    health: health_pb2_grpc.HealthStub
    running: RunningServer
    follower: RegistryFollower
    sources: Path
    outside: Path

    async def synced(self) -> None:
        head = await self.registry.ListDeployments(reg_pb.ListDeploymentsRequest())
        await self.follower.wait_for_revision(head.revision, timeout_s=10)

    async def answer(self, model: str, metadata: Any = None) -> float:
        x = np.zeros((1, 2), np.float32)
        reply = await self.infer.ModelInfer(
            pb.ModelInferRequest(
                model_name=model,
                inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
                raw_input_contents=[x.tobytes()],
            ),
            metadata=metadata,
        )
        return float(np.frombuffer(reply.raw_output_contents[0], np.float32)[0])

    def artifact(self, name: str, needs: str = "", folder: Path | None = None) -> tuple[str, str]:
        path = (folder or self.sources) / f"{name}.py"
        path.write_text(textwrap.dedent(MODEL_PY.format(needs=needs)))
        return f"file://{path}", hashlib.sha256(path.read_bytes()).hexdigest()

    async def register(
        self, model: str, uri_sha: tuple[str, str], *, tenant: str = "", shared: bool = False
    ) -> int:
        names = [m.name for m in (await self.registry.ListModels(reg_pb.ListModelsRequest())).models]
        if model not in names:
            await self.registry.CreateModel(
                reg_pb.CreateModelRequest(model=reg_pb.Model(name=model, tenant=tenant, shared=shared))
            )
        created = await self.registry.CreateModelVersion(
            reg_pb.CreateModelVersionRequest(
                model=model,
                model_version=reg_pb.ModelVersion(
                    artifact_uri=uri_sha[0],
                    artifact_sha256=uri_sha[1],
                    backend="python",
                    inputs=[SPEC],
                    outputs=[OUT],
                    batching=reg_pb.BatchingConfig(max_batch_size=8),
                ),
            )
        )
        return int(created.model_version.version)

    async def deploy(self, model: str, version: int) -> None:
        await self.registry.UpdateDeployment(
            reg_pb.UpdateDeploymentRequest(
                deployment=reg_pb.Deployment(
                    model=model,
                    targets=[reg_pb.DeploymentTarget(version=str(version), weight=100)],
                )
            )
        )

    async def status(self, model: str, version: int) -> reg_pb.ModelVersion:
        got = await self.registry.GetModelVersion(
            reg_pb.GetModelVersionRequest(model=model, version=str(version))
        )
        return got.model_version

    async def serving(self) -> bool:
        check = await self.health.Check(health_pb2.HealthCheckRequest(service=""))
        ready = (await self.infer.ServerReady(pb.ServerReadyRequest())).ready
        return ready and check.status == health_pb2.HealthCheckResponse.SERVING


@asynccontextmanager
async def suite_on(tmp: Path, **over: Any) -> AsyncIterator[Suite]:
    sources, outside = tmp / "sources", tmp / "outside"
    sources.mkdir()
    outside.mkdir()
    reg_settings = RegistrySettings(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        data_dir=tmp / "reg",
        # the registry accepts both folders, so the model server's own check is what is tested
        artifact_roots=f"{sources},{outside}",
        watch_poll_interval_s=0.1,
        watch_progress_interval_s=1.0,
        shutdown_grace_s=0.2,
        access_log=False,
    )
    (tmp / "repo").mkdir()
    ms_settings = make_settings(
        tmp / "repo",
        load_models="",
        registry_artifact_dir=tmp / "staged",
        artifact_roots=str(sources),
        registry_backoff_min_s=0.05,
        registry_backoff_max_s=0.3,
        **over,
    )
    async with AsyncExitStack() as stack:
        reg = await stack.enter_async_context(registry_server(reg_settings))
        rch = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{reg.port}"))
        ms = await stack.enter_async_context(
            running_server(ms_settings.model_copy(update={"registry_url": f"127.0.0.1:{reg.port}"}))
        )
        ich = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{ms.port}"))
        s = Suite(
            registry=reg_grpc.RegistryServiceStub(rch),
            infer=svc_grpc.GRPCInferenceServiceStub(ich),
            health=health_pb2_grpc.HealthStub(ich),
            running=ms,
            follower=ms.extra["follower"],
            sources=sources,
            outside=outside,
        )
        await s.synced()
        yield s


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: {check}")
        await asyncio.sleep(0.05)


def failed_gauge() -> float | None:
    return REGISTRY.get_sample_value("modelserve_model_server_failed_models")


async def test_one_broken_deployment_of_three_is_isolated_and_recovers(tmp_path: Path) -> None:
    flag = tmp_path / "sources" / "dependency.ok"
    async with suite_on(tmp_path) as s:
        for name in ("alpha", "beta"):
            await s.deploy(name, await s.register(name, s.artifact(name)))
        broken = await s.register("gamma", s.artifact("gamma", needs=str(flag)))
        await s.deploy("gamma", broken)
        await s.synced()

        assert await s.serving()  # SERVING: health and ServerReady
        assert await s.answer("alpha") == 1.0 and await s.answer("beta") == 1.0
        record = await s.status("gamma", broken)
        assert record.status == FAILED and "dependency file is missing" in record.status_message
        assert not (await s.infer.ModelReady(pb.ModelReadyRequest(name="gamma"))).ready
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.answer("gamma")
        assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)
        assert failed_gauge() == 1
        index = (await s.infer.RepositoryIndex(pb.RepositoryIndexRequest())).models
        assert any(m.name == "gamma" and "dependency file is missing" in m.reason for m in index)

        # fix the cause and set the version back to PENDING: the follower tries it again
        flag.write_text("ok")
        await s.registry.UpdateModelVersion(
            reg_pb.UpdateModelVersionRequest(
                model_version=reg_pb.ModelVersion(
                    model="gamma", version=broken, status=reg_pb.ModelVersion.STATUS_PENDING
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["status"]),
            )
        )
        await s.synced()

        async def gamma_ready() -> bool:
            return bool((await s.infer.ModelReady(pb.ModelReadyRequest(name="gamma"))).ready)

        await eventually(gamma_ready)
        assert await s.answer("gamma") == 1.0
        assert (await s.status("gamma", broken)).status == READY
        assert failed_gauge() == 0
        assert await s.answer("alpha") == 1.0 and await s.serving()


async def test_strict_readiness_keeps_all_or_nothing(tmp_path: Path) -> None:
    async with suite_on(tmp_path, strict_readiness=True) as s:
        await s.deploy("alpha", await s.register("alpha", s.artifact("alpha")))
        await s.synced()
        assert await s.serving()
        missing = str(tmp_path / "never")
        await s.deploy("gamma", await s.register("gamma", s.artifact("gamma", needs=missing)))
        await s.synced()
        assert not await s.serving()  # one deployed model serves nothing: not ready
        assert await s.answer("alpha") == 1.0  # yet alpha still answers


async def test_artifact_outside_the_roots_fails_naming_the_rule_without_facts(tmp_path: Path) -> None:
    async with suite_on(tmp_path) as s:
        uri, sha = s.artifact("secret", folder=s.outside)
        size = (s.outside / "secret.py").stat().st_size
        v = await s.register("outsider", (uri, sha))
        await s.deploy("outsider", v)
        # a symlink inside the root that leads out of it
        (s.sources / "link.py").symlink_to(s.outside / "secret.py")
        linked = await s.register("linked", (f"file://{s.sources}/link.py", sha))
        await s.deploy("linked", linked)
        await s.synced()
        refused = await s.status("outsider", v)
        assert refused.status == FAILED
        assert "not under an allowed artifact root" in refused.status_message
        via_link = await s.status("linked", linked)
        assert via_link.status == FAILED and "symbolic link" in via_link.status_message
        for message in (refused.status_message, via_link.status_message):
            assert sha not in message and str(size) not in message
        # a missing file outside the roots gets the very same message
        gone = await s.register("outsider", s.artifact("secreX", folder=s.outside))
        (s.outside / "secreX.py").unlink()  # gone before the model server looks
        await s.deploy("outsider", gone)
        await s.synced()
        assert (await s.status("outsider", gone)).status_message == refused.status_message.replace(
            "secret", "secreX"
        )
        assert await s.serving()


async def test_registry_ownership_confines_tenants(tmp_path: Path) -> None:
    async with suite_on(tmp_path) as s:
        for tenant in ("t1", "t2"):
            await s.registry.CreateTenant(reg_pb.CreateTenantRequest(tenant=reg_pb.Tenant(name=tenant)))
        await s.deploy("mine", await s.register("mine", s.artifact("mine"), tenant="t1"))
        await s.deploy("common", await s.register("common", s.artifact("common"), tenant="t1", shared=True))
        await s.synced()
        t1, t2 = ((TENANT_HEADER, "t1"),), ((TENANT_HEADER, "t2"),)
        assert await s.answer("mine", t1) == 1.0
        assert await s.answer("common", t2) == 1.0  # shared with every tenant
        assert await s.answer("mine") == 1.0  # trusted
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.answer("mine", t2)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "model 'mine' not found in the repository"
        index = await s.infer.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=t2)
        assert {m.name for m in index.models} == {"common"}
        stats = await s.infer.ModelStatistics(pb.ModelStatisticsRequest(), metadata=t2)
        assert {m.name for m in stats.model_stats} == {"common"}
        # the platform administrator shares "mine": the follower learns it from the deployment
        await s.registry.UpdateModel(
            reg_pb.UpdateModelRequest(
                model=reg_pb.Model(name="mine", shared=True),
                update_mask=field_mask_pb2.FieldMask(paths=["shared"]),
            )
        )
        await s.synced()
        assert await s.answer("mine", t2) == 1.0


async def test_code_outside_the_roots_is_never_imported(tmp_path: Path) -> None:
    """A local model whose code file climbs out of the repository (default_model_filename with
    '..'), and a registry version folder outside the roots, are refused before any import; a
    model folder the operator symlinked into the repository is the operator's and loads."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    marker = tmp_path / "imported"
    outside.mkdir()
    (outside / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + PLAIN_PY)
    config = """
    backend: "python"
    input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]
    output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]
    """
    write_model(repo, "fine", config, PLAIN_PY)
    write_model(repo, "climber", config + 'default_model_filename: "../../../outside/evil.py"\n')
    linked = write_model(tmp_path / "elsewhere", "linked", config, PLAIN_PY)
    (repo / "linked").symlink_to(linked)
    async with running_server(make_settings(repo, data_dir=tmp_path / "data")) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = svc_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready  # isolation: still ready
            assert (await stub.ModelReady(pb.ModelReadyRequest(name="fine"))).ready
            assert (await stub.ModelReady(pb.ModelReadyRequest(name="linked"))).ready
            assert not (await stub.ModelReady(pb.ModelReadyRequest(name="climber"))).ready
            index = (await stub.RepositoryIndex(pb.RepositoryIndexRequest())).models
            reason = next(m.reason for m in index if m.name == "climber")
            assert "model code refused" in reason and "not inside the model repository" in reason
            manager = running.extra["manager"]
            assert manager.failed_count == 1
            # a version folder outside the roots (the registry path loads private copies only)
            cfg = config_pb.ModelConfig(name="stray", backend="python")
            cfg.input.add(name="x", data_type=config_pb.TYPE_FP32, dims=[1])
            cfg.output.add(name="y", data_type=config_pb.TYPE_FP32, dims=[1])
            (outside / "1").mkdir()
            (outside / "1" / "model.py").write_text((outside / "evil.py").read_text())
            with pytest.raises(
                ModelLoadFailed, match="model code refused: .*not under an allowed artifact root"
            ):
                await manager.load_version("stray", 1, outside / "1", cfg)
            assert not marker.exists()  # nothing of either was imported
