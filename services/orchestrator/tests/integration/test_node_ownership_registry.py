"""Model ownership of pipeline nodes against the REAL registry (`python -m modelserve_registry`
subprocess, SQLite): the orchestrator asks GetModel with the tenant's identity, so a tenant may
name its own model (even before it is deployed) and a shared one, never another tenant's; a model
that stops being shared stops running in the tenant's pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import field_mask_pb2
from orchestrator_test_helpers import make_settings, outputs, sequence_pipeline, tensor

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_orchestrator.server import running_server

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

A = (("x-modelserve-tenant", "acme"), ("x-modelserve-scopes", "infer,write"))
X = [1.0, -2.0]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    env = {
        "REGISTRY_GRPC_PORT": str(port),
        "REGISTRY_METRICS_PORT": "-1",
        "REGISTRY_DATA_DIR": str(tmp_path / "registry"),
        "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "REGISTRY_ACCESS_LOG": "false",
    }
    proc = ServiceProcess("modelserve_registry", env, port)
    with proc:
        with grpc.insecure_channel(proc.target) as ch:
            stub = reg_grpc.RegistryServiceStub(ch)
            for t in ("acme", "globex"):
                stub.CreateTenant(reg_pb.CreateTenantRequest(tenant=reg_pb.Tenant(name=t)), timeout=5)
            for name, owner, shared in (
                ("mine", "acme", False),
                ("theirs", "globex", False),
                ("common", "globex", True),
            ):
                stub.CreateModel(
                    reg_pb.CreateModelRequest(model=reg_pb.Model(name=name, tenant=owner, shared=shared)),
                    timeout=5,
                )
        yield proc
    proc.stop()


async def test_real_registry_decides_which_models_a_tenant_may_name(
    tmp_path: Path, models: Any, registry: ServiceProcess
) -> None:
    fake = models.servicer
    fake.models["theirs"] = fake.models["double"]
    fake.models["common"] = fake.models["neg"]
    fake.owners = {"theirs": "globex"}
    fake.shared = {"identity", "common"}
    settings = make_settings(tmp_path, models.target, registry_url=registry.target)
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            s = pb_grpc.OrchestratorServiceStub(ch)
            # own (not deployed yet) and shared models may be named, with scopes lacking "read"
            await s.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("p1", ["mine"])), metadata=A
            )
            await s.CreatePipeline(
                pb.CreatePipelineRequest(pipeline=sequence_pipeline("p2", ["identity", "common"])), metadata=A
            )
            resp = await s.RunPipeline(
                pb.RunPipelineRequest(pipeline="p2", inputs=[tensor("x", X)]), metadata=A
            )
            np.testing.assert_allclose(outputs(resp)["y"], -np.array(X))
            # another tenant's model: refused like a missing one
            for model in ("theirs", "nobody-has-this", "NotARegistryName"):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await s.CreatePipeline(
                        pb.CreatePipelineRequest(pipeline=sequence_pipeline("p3", ["identity", model])),
                        metadata=A,
                    )
                assert exc.value.code() == grpc.StatusCode.NOT_FOUND
                assert exc.value.details() == f"node 'n1': model {model!r} not found"

            # the platform admin stops sharing "common": A's pipeline stops at the run's check
            with grpc.insecure_channel(registry.target) as rch:
                reg_grpc.RegistryServiceStub(rch).UpdateModel(
                    reg_pb.UpdateModelRequest(
                        model=reg_pb.Model(name="common", shared=False),
                        update_mask=field_mask_pb2.FieldMask(paths=["shared"]),
                    ),
                    timeout=5,
                )
            called = len(fake.seen_by("acme"))
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await s.RunPipeline(pb.RunPipelineRequest(pipeline="p2", inputs=[tensor("x", X)]), metadata=A)
            assert (exc.value.code(), exc.value.details()) == (
                grpc.StatusCode.NOT_FOUND,
                "node 'n1': model 'common' not found",
            )
            assert len(fake.seen_by("acme")) == called  # nothing ran
