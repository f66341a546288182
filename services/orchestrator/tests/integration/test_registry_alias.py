"""Alias resolution through the REAL registry (`python -m modelserve_registry` subprocess, SQLite):
a model node naming an alias ("production", "latest") calls the model server with the version
number the alias points at; a moved alias is followed once the cache expires; an unknown alias
fails the node NOT_FOUND naming it; while the registry is down the last answer is used."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from orchestrator_test_helpers import make_settings, model_node, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_orchestrator.server import running_server

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    env = {
        "REGISTRY_GRPC_PORT": str(port),
        "REGISTRY_METRICS_PORT": "-1",
        "REGISTRY_DATA_DIR": str(tmp_path / "registry"),
        "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "REGISTRY_ACCESS_LOG": "false",
        "REGISTRY_ARTIFACT_ROOTS": str(tmp_path / "artifacts"),
    }
    artifact = tmp_path / "artifacts" / "double"
    artifact.mkdir(parents=True)
    proc = ServiceProcess("modelserve_registry", env, port)
    with proc:
        with grpc.insecure_channel(proc.target) as ch:
            stub = reg_grpc.RegistryServiceStub(ch)
            stub.CreateModel(reg_pb.CreateModelRequest(model=reg_pb.Model(name="double")), timeout=5)
            for _ in range(3):
                stub.CreateModelVersion(
                    reg_pb.CreateModelVersionRequest(
                        model="double",
                        model_version=reg_pb.ModelVersion(
                            artifact_uri=artifact.as_uri(), artifact_sha256="0" * 64, backend="python"
                        ),
                    ),
                    timeout=5,
                )
            set_alias(stub, "2")
        yield proc
    proc.stop()


def set_alias(stub: reg_grpc.RegistryServiceStub, version: str) -> None:
    stub.SetAlias(reg_pb.SetAliasRequest(model="double", alias="production", version=version), timeout=5)


def _pipeline(name: str, version: str) -> pb.Pipeline:
    return pb.Pipeline(
        name=name,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1]}],
        nodes=[model_node("n0", "double", "inputs.x", version=version)],
        outputs=[pb.PipelineOutput(name="y", sources=["n0.y"])],
    )


async def _served(stub: pb_grpc.OrchestratorServiceStub, pipeline: str) -> str:
    resp = await stub.RunPipeline(
        pb.RunPipelineRequest(pipeline=pipeline, inputs=[tensor("x", [1.0])]), timeout=10
    )
    return resp.trace[0].model_version


async def test_alias_resolved_through_registry_followed_when_moved_and_cached_while_down(
    tmp_path: Path, models: Any, registry: ServiceProcess
) -> None:
    settings = make_settings(tmp_path, models.target, registry_url=registry.target, alias_cache_s=0.3)
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            for name, version in (("prod", "production"), ("latest", "latest"), ("pinned", "1")):
                await stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=_pipeline(name, version)))
            # the fake model server answers with the version it was asked for
            assert await _served(stub, "prod") == "2"
            assert await _served(stub, "latest") == "3"
            assert await _served(stub, "pinned") == "1"

            with grpc.insecure_channel(registry.target) as reg_ch:
                set_alias(reg_grpc.RegistryServiceStub(reg_ch), "3")
            assert await _served(stub, "prod") == "2"  # cached
            await asyncio.sleep(0.4)
            assert await _served(stub, "prod") == "3"

            await stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=_pipeline("ghost", "canary")))
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await _served(stub, "ghost")
            assert exc.value.code() is grpc.StatusCode.NOT_FOUND
            assert "canary" in (exc.value.details() or "") and "n0" in (exc.value.details() or "")

            registry.stop()
            await asyncio.sleep(0.4)  # expired: the registry is asked, does not answer, last answer used
            assert await _served(stub, "prod") == "3"
