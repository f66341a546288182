"""Prediction logs and drift over the wire, on SQLite and PostgreSQL (issue 18): in-cluster writes
only, tenant isolation of ListPredictionLogs (another tenant's model is NOT_FOUND like a missing
one), keyset pages, the size cap, retention, the deployment's logging policy, and PSI drift that
rises when the inputs shift and not otherwise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.server import RunningServer
from modelserve_registry.server import running_server
from modelserve_registry.settings import RegistrySettings

Stub = registry_grpc.RegistryServiceStub
SHA = "b" * 64


def as_tenant(tenant: str, scopes: str = "read,write") -> tuple[tuple[str, str], ...]:
    return (("x-modelserve-tenant", tenant), ("x-modelserve-scopes", scopes))


async def fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


@pytest.fixture
async def reg(
    database_url: str, tmp_path: Path, registry_settings: Callable[..., RegistrySettings]
) -> AsyncIterator[tuple[Stub, RunningServer, str]]:
    artifact = tmp_path / "artifacts" / "m.onnx"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"onnx")
    settings = registry_settings(
        database_url,
        tmp_path,
        prediction_log_retention_s=86400.0,
        prediction_log_max_record_bytes=4096,
        prediction_log_max_batch=50,
        prediction_log_sweep_interval_s=3600.0,
        prediction_log_sweep_batch=2,
    )
    async with running_server(settings) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield registry_grpc.RegistryServiceStub(channel), running, artifact.as_uri()


async def _model(stub: Stub, uri: str, name: str, tenant: str, versions: int = 1) -> None:
    md = as_tenant(tenant)
    await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name=name)), metadata=md)
    for _ in range(versions):
        mv = pb.ModelVersion(artifact_uri=uri, artifact_sha256=SHA, backend="onnx")
        await stub.CreateModelVersion(pb.CreateModelVersionRequest(model=name, model_version=mv), metadata=md)


async def _tenants(stub: Stub, *names: str) -> None:
    for name in names:
        await stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(name=name)))


def _ts(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def _tensor(array: np.ndarray[Any, Any], name: str = "features") -> tensor_pb.Tensor:
    a = np.ascontiguousarray(array, dtype=np.float32)
    return tensor_pb.Tensor(name=name, datatype="FP32", shape=list(a.shape), raw_contents=a.tobytes())


def _log(
    model: str, version: int, us: int, rid: str, inputs: list[tensor_pb.Tensor] | None = None
) -> pb.PredictionLog:
    return pb.PredictionLog(model=model, version=version, request_id=rid, time=_ts(us), inputs=inputs or [])


async def test_logs_in_cluster_writes_tenant_isolation_and_pages(
    reg: tuple[Stub, RunningServer, str],
) -> None:
    stub, _, uri = reg
    await _tenants(stub, "acme", "globex")
    await _model(stub, uri, "a-model", "acme")
    await _model(stub, uri, "b-model", "globex")
    now = int(time.time() * 1e6)
    logs = [_log("a-model", 1, now - i * 1000, f"a{i}", [_tensor(np.ones((1, 2)))]) for i in range(5)]
    logs += [_log("b-model", 1, now, "b0"), _log("no-such-model", 1, now, "x")]
    stored = await stub.WritePredictionLogs(pb.WritePredictionLogsRequest(logs=logs))
    assert stored.stored == 6  # the record of a model that does not exist is not stored

    # tenants never write logs, whatever their scopes
    code, _ = await fails(
        stub.WritePredictionLogs(
            pb.WritePredictionLogsRequest(logs=logs[:1]), metadata=as_tenant("acme", "admin")
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, msg = await fails(stub.WritePredictionLogs(pb.WritePredictionLogsRequest(logs=logs * 10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 50" in msg
    huge = pb.PredictionLog(model="a-model", version=1, request_id="r", error="e" * 5000)
    code, msg = await fails(stub.WritePredictionLogs(pb.WritePredictionLogsRequest(logs=[huge])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "logs[0].error" in msg

    # acme reads its own model's logs, newest first, in keyset pages without duplicates
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await stub.ListPredictionLogs(
            pb.ListPredictionLogsRequest(model="a-model", page_size=2, page_token=token),
            metadata=as_tenant("acme"),
        )
        seen += [r.request_id for r in page.logs]
        assert all(r.tenant == "acme" and r.model == "a-model" for r in page.logs)
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"a{i}" for i in range(5)]
    first = (await stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="a-model", page_size=1))).logs[
        0
    ]
    assert np.frombuffer(first.inputs[0].raw_contents, np.float32).tolist() == [1.0, 1.0]

    # a time range
    ranged = await stub.ListPredictionLogs(
        pb.ListPredictionLogsRequest(model="a-model", start_time=_ts(now - 2500), end_time=_ts(now)),
        metadata=as_tenant("acme"),
    )
    assert [r.request_id for r in ranged.logs] == ["a1", "a2"]

    # another tenant's model answers exactly what a missing model does
    hidden = await fails(
        stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="b-model"), metadata=as_tenant("acme"))
    )
    missing = await fails(
        stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="nope"), metadata=as_tenant("acme"))
    )
    assert hidden[0] == missing[0] == grpc.StatusCode.NOT_FOUND
    assert hidden[1].replace("b-model", "X") == missing[1].replace("nope", "X")
    # a shared model's logs hold other tenants' inputs: still hidden from non-owners
    await stub.UpdateModel(
        pb.UpdateModelRequest(model=pb.Model(name="b-model", shared=True), update_mask={"paths": ["shared"]})
    )
    code, _ = await fails(
        stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="b-model"), metadata=as_tenant("acme"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, msg = await fails(
        stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="a-model", page_token="garbage"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in msg


async def test_size_cap_and_retention_sweep(reg: tuple[Stub, RunningServer, str]) -> None:
    stub, running, uri = reg
    await _model(stub, uri, "m", "default")
    now = int(time.time() * 1e6)
    big = _tensor(np.zeros((2000,)))  # 8000 bytes > the 4096-byte cap
    old = [_log("m", 1, now - 2 * 86400 * 10**6 - i, f"old{i}") for i in range(5)]
    await stub.WritePredictionLogs(
        pb.WritePredictionLogsRequest(logs=[_log("m", 1, now, "new", [big]), *old])
    )
    listed = (await stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="m"))).logs
    assert [r.request_id for r in listed] == ["new", *(f"old{i}" for i in range(5))]
    capped = listed[0].inputs[0]
    assert (capped.datatype, list(capped.shape), capped.raw_contents) == ("FP32", [2000], b"")
    assert await running.extra["service"].sweep_prediction_logs() == 5  # in batches of 2
    listed = (await stub.ListPredictionLogs(pb.ListPredictionLogsRequest(model="m"))).logs
    assert [r.request_id for r in listed] == ["new"]


async def test_deployment_carries_logging_policy(reg: tuple[Stub, RunningServer, str]) -> None:
    stub, _, uri = reg
    await _model(stub, uri, "m", "default")
    policy = pb.PredictionLogging(sample_ratio=0.25, log_request=True, max_record_bytes=1000)
    dep = pb.Deployment(
        model="m", targets=[pb.DeploymentTarget(version="1", weight=100)], prediction_logging=policy
    )
    await stub.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=dep))
    got = (await stub.GetDeployment(pb.GetDeploymentRequest(model="m"))).deployment
    assert got.prediction_logging == policy
    listed = (await stub.ListDeployments(pb.ListDeploymentsRequest())).deployments
    assert listed[0].prediction_logging == policy
    for bad in (pb.PredictionLogging(sample_ratio=1.5), pb.PredictionLogging(max_record_bytes=-1)):
        dep.prediction_logging.CopyFrom(bad)
        code, msg = await fails(stub.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=dep)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "prediction_logging" in msg


def _drift_gauge(model: str, version: str, feature: str) -> float | None:
    return REGISTRY.get_sample_value(
        "modelserve_registry_feature_drift_score", {"model": model, "version": version, "feature": feature}
    )


async def test_drift_rises_when_inputs_shift_and_not_otherwise(reg: tuple[Stub, RunningServer, str]) -> None:
    stub, running, uri = reg
    await _model(stub, uri, "m", "default", versions=2)
    rng = np.random.default_rng(7)
    sample = _tensor(rng.normal(0.0, 1.0, size=(4000, 3)))
    for version in ("1", "2"):
        ref = await stub.SetDriftReference(
            pb.SetDriftReferenceRequest(model="m", version=version, sample=[sample])
        )
        assert list(ref.features) == ["features[0]", "features[1]", "features[2]"]
    now = int(time.time() * 1e6)
    logs = []
    for i in range(40):
        same = rng.normal(0.0, 1.0, size=(50, 3))
        shifted = rng.normal(0.0, 1.0, size=(50, 3))
        shifted[:, 1] += 1.0
        logs.append(_log("m", 1, now - i, f"s{i}", [_tensor(same)]))
        logs.append(_log("m", 2, now - i, f"d{i}", [_tensor(shifted)]))
    await stub.WritePredictionLogs(pb.WritePredictionLogsRequest(logs=logs[:50]))
    await stub.WritePredictionLogs(pb.WritePredictionLogsRequest(logs=logs[50:]))

    steady = await stub.GetModelVersionDrift(pb.GetModelVersionDriftRequest(model="m", version="1"))
    assert steady.max_score < 0.1, steady
    assert all(f.count == 2000 for f in steady.features)
    drifted = await stub.GetModelVersionDrift(pb.GetModelVersionDriftRequest(model="m", version="2"))
    scores = {f.feature: f.score for f in drifted.features}
    assert scores["features[1]"] > 0.25 and scores["features[0]"] < 0.1 and scores["features[2]"] < 0.1
    assert drifted.max_score == scores["features[1]"]
    mean1 = next(f for f in drifted.features if f.feature == "features[1]")
    assert abs(mean1.mean - 1.0) < 0.15 and abs(mean1.reference_mean) < 0.1

    # a reference from the first N logged requests of the drifted version: no drift against itself
    await stub.SetDriftReference(pb.SetDriftReferenceRequest(model="m", version="2", from_logged_requests=40))
    rebased = await stub.GetModelVersionDrift(pb.GetModelVersionDriftRequest(model="m", version="2"))
    assert rebased.max_score < 0.1

    # the gauge covers deployed versions with a reference only
    dep = pb.Deployment(model="m", targets=[pb.DeploymentTarget(version="1", weight=100)])
    await stub.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=dep))
    await running.extra["service"].refresh_drift_metrics()
    assert _drift_gauge("m", "1", "features[0]") is not None
    assert _drift_gauge("m", "2", "features[1]") is None


async def test_drift_refusals(reg: tuple[Stub, RunningServer, str]) -> None:
    stub, _, uri = reg
    await _tenants(stub, "acme", "globex")
    await _model(stub, uri, "a-model", "acme")
    code, msg = await fails(
        stub.GetModelVersionDrift(pb.GetModelVersionDriftRequest(model="a-model", version="1"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "SetDriftReference" in msg
    text = tensor_pb.Tensor(name="t", datatype="BYTES", shape=[1], raw_contents=b"\x01\x00\x00\x00a")
    code, msg = await fails(
        stub.SetDriftReference(pb.SetDriftReferenceRequest(model="a-model", version="1", sample=[text]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "numeric" in msg
    sample = _tensor(np.arange(10.0))
    code, _ = await fails(
        stub.SetDriftReference(
            pb.SetDriftReferenceRequest(model="a-model", version="1", sample=[sample]),
            metadata=as_tenant("globex"),
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await fails(
        stub.GetModelVersionDrift(
            pb.GetModelVersionDriftRequest(model="a-model", version="1"), metadata=as_tenant("globex")
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
