"""In-memory fakes of our own protocols, served over real gRPC in the tests."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from gwtest.v1 import template_service_pb2 as tpl_pb
from gwtest.v1 import template_service_pb2_grpc as tpl_grpc

from modelserve.inference.v2 import grpc_service_pb2 as inf_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as inf_grpc
from modelserve.inference.v2 import model_config_pb2 as cfg_pb
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as reg_grpc

MODELS = {"identity", "add", "nan", "nan_typed", "slow", "bytes"}


def _md(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: str(v) for k, v in (context.invocation_metadata() or ())}


class FakeInference(inf_grpc.GRPCInferenceServiceServicer):
    """Models: identity (OUTPUTi = INPUTi), add (OUTPUT0 = INPUT0 + INPUT1, FP32), nan (FP32 NaN
    and infinities, raw), nan_typed (the same, typed contents), slow (sleeps; records cancellation),
    bytes (one BYTES input, echoed typed)."""

    def __init__(self) -> None:
        self.last_metadata: dict[str, str] = {}
        self.last_request: inf_pb.ModelInferRequest | None = None
        self.cancelled = asyncio.Event()
        self.calls = 0

    async def ServerLive(self, request: Any, context: Any) -> inf_pb.ServerLiveResponse:
        return inf_pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> inf_pb.ServerReadyResponse:
        return inf_pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> inf_pb.ServerMetadataResponse:
        return inf_pb.ServerMetadataResponse(name="fake", version="1.0", extensions=["binary_tensor_data"])

    async def ModelReady(self, request: inf_pb.ModelReadyRequest, context: Any) -> inf_pb.ModelReadyResponse:
        return inf_pb.ModelReadyResponse(ready=request.name in MODELS)

    async def ModelMetadata(
        self, request: inf_pb.ModelMetadataRequest, context: Any
    ) -> inf_pb.ModelMetadataResponse:
        self.last_metadata = _md(context)
        if request.name not in MODELS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        T = inf_pb.ModelMetadataResponse.TensorMetadata
        if request.name == "add":
            return inf_pb.ModelMetadataResponse(
                name="add",
                versions=["1", "2"],
                platform="fake",
                inputs=[
                    T(name="INPUT0", datatype="FP32", shape=[-1]),
                    T(name="INPUT1", datatype="FP32", shape=[-1]),
                ],
                outputs=[T(name="OUTPUT0", datatype="FP32", shape=[-1])],
            )
        return inf_pb.ModelMetadataResponse(
            name=request.name,
            versions=["1"],
            platform="fake",
            inputs=[T(name="INPUT0", datatype="FP32", shape=[-1])],
            outputs=[T(name="OUTPUT0", datatype="FP32", shape=[-1])],
        )

    async def RepositoryIndex(self, request: Any, context: Any) -> inf_pb.RepositoryIndexResponse:
        self.last_metadata = _md(context)
        r = inf_pb.RepositoryIndexResponse()
        for name in sorted(MODELS):
            r.models.add(name=name, version="1", state="READY")
        return r

    async def RepositoryModelLoad(self, request: Any, context: Any) -> inf_pb.RepositoryModelLoadResponse:
        self.loaded = request.model_name
        return inf_pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> inf_pb.RepositoryModelUnloadResponse:
        self.unloaded = request.model_name
        return inf_pb.RepositoryModelUnloadResponse()

    async def ModelStatistics(self, request: Any, context: Any) -> inf_pb.ModelStatisticsResponse:
        self.last_metadata = _md(context)
        r = inf_pb.ModelStatisticsResponse()
        for name in [request.name] if request.name else ["add", "identity"]:
            r.model_stats.add(name=name, version="1", inference_count=3)
        return r

    async def ModelConfig(
        self, request: inf_pb.ModelConfigRequest, context: Any
    ) -> inf_pb.ModelConfigResponse:
        return inf_pb.ModelConfigResponse(config=cfg_pb.ModelConfig(name=request.name, max_batch_size=8))

    async def ModelInfer(
        self, request: inf_pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> inf_pb.ModelInferResponse:
        self.calls += 1
        self.last_metadata = _md(context)
        self.last_request = request
        return await self._infer(request, context)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[inf_pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[inf_pb.ModelStreamInferResponse]:
        async for req in request_iterator:
            yield inf_pb.ModelStreamInferResponse(infer_response=await self._infer(req, context))

    async def _infer(self, request: inf_pb.ModelInferRequest, context: Any) -> inf_pb.ModelInferResponse:
        name = request.model_name
        if name not in MODELS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        resp = inf_pb.ModelInferResponse(
            model_name=name, model_version=request.model_version or "1", id=request.id
        )
        raw = list(request.raw_input_contents)
        if name == "identity":
            for i, t in enumerate(request.inputs):
                resp.outputs.add(name=f"OUTPUT{i}", datatype=t.datatype, shape=t.shape)
                resp.raw_output_contents.append(raw[i])
        elif name == "add":
            a = np.frombuffer(raw[0], dtype=np.float32)
            b = np.frombuffer(raw[1], dtype=np.float32)
            resp.outputs.add(name="OUTPUT0", datatype="FP32", shape=request.inputs[0].shape)
            resp.raw_output_contents.append((a + b).astype(np.float32).tobytes())
        elif name in ("nan", "nan_typed"):
            values = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
            out = resp.outputs.add(name="OUTPUT0", datatype="FP32", shape=[4])
            if name == "nan":
                resp.raw_output_contents.append(values.tobytes())
            else:
                out.contents.fp32_contents.extend(values.tolist())
        elif name == "bytes":
            items, i, buf = [], 0, raw[0]
            while i < len(buf):
                (n,) = struct.unpack_from("<I", buf, i)
                items.append(buf[i + 4 : i + 4 + n])
                i += 4 + n
            out = resp.outputs.add(name="OUTPUT0", datatype="BYTES", shape=[len(items)])
            out.contents.bytes_contents.extend(items)
        elif name == "slow":
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return resp


class FakeRegistry(reg_grpc.RegistryServiceServicer):
    """API keys, deployments and a Watch stream; GetModel echoes the caller's tenant."""

    def __init__(self) -> None:
        self.keys: dict[str, reg_pb.VerifyApiKeyResponse] = {}
        self.deployments: dict[str, reg_pb.Deployment] = {}
        self.verify_calls = 0
        self.last_metadata: dict[str, str] = {}
        self._watchers: list[asyncio.Queue[reg_pb.WatchResponse]] = []
        self.revision = 0

    def add_key(
        self,
        secret: str,
        key: str,
        tenant: str,
        scopes: list[str],
        rps: float = 0,
        burst: int = 0,
        expire_at: float | None = None,
    ) -> None:
        self.keys[secret] = reg_pb.VerifyApiKeyResponse(
            key=key,
            tenant=tenant,
            scopes=scopes,
            rate_limit=reg_pb.RateLimit(requests_per_second=rps, burst=burst),
        )
        if expire_at is not None:
            self.keys[secret].expire_time.FromNanoseconds(int(expire_at * 1e9))

    def revoke(self, key: str) -> None:
        for secret, v in list(self.keys.items()):
            if v.key == key:
                del self.keys[secret]
        self.revision += 1
        change = reg_pb.WatchResponse(
            revision=self.revision, type=reg_pb.CHANGE_TYPE_DELETED, api_key=reg_pb.ApiKey(key=key)
        )
        for q in self._watchers:
            q.put_nowait(change)

    def deploy(
        self, model: str, tenant: str, weights: dict[str, int], rps: float = 0, burst: int = 0
    ) -> None:
        self.deployments[model] = reg_pb.Deployment(
            model=model,
            tenant=tenant,
            targets=[
                reg_pb.DeploymentTarget(version=v, version_number=int(v), weight=w)
                for v, w in weights.items()
            ],
            rate_limit=reg_pb.RateLimit(requests_per_second=rps, burst=burst),
        )

    async def VerifyApiKey(
        self, request: reg_pb.VerifyApiKeyRequest, context: Any
    ) -> reg_pb.VerifyApiKeyResponse:
        self.verify_calls += 1
        found = self.keys.get(request.secret)
        if (
            found is not None
            and found.HasField("expire_time")
            and found.expire_time.ToNanoseconds() < time.time_ns()
        ):
            found = None
        if found is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        return found

    async def GetDeployment(
        self, request: reg_pb.GetDeploymentRequest, context: Any
    ) -> reg_pb.GetDeploymentResponse:
        found = self.deployments.get(request.model)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} not found")
        return reg_pb.GetDeploymentResponse(deployment=found)

    async def GetModel(self, request: reg_pb.GetModelRequest, context: Any) -> reg_pb.GetModelResponse:
        self.last_metadata = _md(context)
        return reg_pb.GetModelResponse(
            model=reg_pb.Model(
                name=request.model,
                tenant=self.last_metadata.get("x-modelserve-tenant", ""),
                latest_version=2**40,
            )
        )

    async def CreateModel(
        self, request: reg_pb.CreateModelRequest, context: Any
    ) -> reg_pb.CreateModelResponse:
        self.last_metadata = _md(context)
        return reg_pb.CreateModelResponse(model=request.model)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    async def Watch(self, request: reg_pb.WatchRequest, context: Any) -> AsyncIterator[reg_pb.WatchResponse]:
        q: asyncio.Queue[reg_pb.WatchResponse] = asyncio.Queue()
        self._watchers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._watchers.remove(q)


class TemplateServicer(tpl_grpc.TemplateServiceServicer):
    async def _echo(
        self, request: tpl_pb.EchoRequest, context: grpc.aio.ServicerContext
    ) -> tpl_pb.EchoResponse:
        md = sorted(f"{k}={v}" for k, v in _md(context).items() if not k.startswith(("user-agent", "grpc-")))
        await context.send_initial_metadata((("x-upstream", "yes"),))
        return tpl_pb.EchoResponse(echoed=request, metadata=md)

    Echo = Deep = Wild = Nested = _echo

    async def Count(self, request: tpl_pb.CountRequest, context: Any) -> AsyncIterator[tpl_pb.CountResponse]:
        for i in range(request.n):
            if request.fail_after and i == request.fail_after:
                await context.abort(grpc.StatusCode.INTERNAL, "boom")
            if request.delay_ms:
                await asyncio.sleep(request.delay_ms / 1000)
            yield tpl_pb.CountResponse(i=i)

    async def Fail(self, request: tpl_pb.FailRequest, context: Any) -> tpl_pb.FailResponse:
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        if request.code:
            await context.abort(grpc.StatusCode(_CODES[request.code]), f"failed with {request.code}")
        return tpl_pb.FailResponse(ok=True)


_CODES = {c.value[0]: c.value for c in grpc.StatusCode}
