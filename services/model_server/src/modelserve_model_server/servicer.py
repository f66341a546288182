"""inference.GRPCInferenceService over :class:`InferenceService`: protobuf in, protobuf out, and the
caller's tenant checked against :class:`~modelserve_model_server.ownership.Ownership` on every RPC
that names or lists models (a hidden model is answered as a missing one; load/unload are refused
PERMISSION_DENIED to tenant callers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.ownership import Ownership, refuse_tenant_callers, tenant_of
from modelserve_model_server.prediction_logger import CALLER_TENANT
from modelserve_model_server.service import EXTENSIONS, SERVER_NAME, SERVER_VERSION, InferenceService

_LIVE = pb.ServerLiveResponse(live=True)
_READY = pb.ServerReadyResponse(ready=True)
_NOT_READY = pb.ServerReadyResponse(ready=False)
_LOADED = pb.RepositoryModelLoadResponse()
_UNLOADED = pb.RepositoryModelUnloadResponse()


class InferenceServicer(svc_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 / Triton gRPC API."""

    def __init__(self, service: InferenceService, ownership: Ownership | None = None) -> None:
        self._service = service
        self._ownership = ownership if ownership is not None else Ownership()
        self._metadata = pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        return _LIVE

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        return _READY if self._service.server_ready() else _NOT_READY

    def _check(self, context: grpc.aio.ServicerContext[Any, Any], name: str, version: str = "") -> str | None:
        """The caller's tenant (None: trusted) after checking it may see ``name``: a hidden model
        raises exactly what a missing one gets."""
        tenant = tenant_of(context)
        if not self._ownership.visible(name, tenant):
            raise self._service.manager.missing(name, version)
        return tenant

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        self._check(context, request.name, request.version)
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        return self._metadata

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        self._check(context, request.name, request.version)
        return self._service.model_metadata(request.name, request.version)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        CALLER_TENANT.set(self._check(context, request.model_name, request.model_version))
        return await self._service.infer(request, context.time_remaining())

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        tenant = tenant_of(context)
        CALLER_TENANT.set(tenant)  # which requests the prediction logger may log
        if tenant is None:
            async for response in self._service.stream_infer(request_iterator):
                yield response
            return
        ownership, manager = self._ownership, self._service.manager

        def check(request: pb.ModelInferRequest) -> None:
            if not ownership.visible(request.model_name, tenant):
                raise manager.missing(request.model_name, request.model_version)

        async for response in self._service.stream_infer(request_iterator, check):
            yield response

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelConfigResponse:
        self._check(context, request.name, request.version)
        return self._service.model_config(request.name, request.version)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelStatisticsResponse:
        tenant = self._check(context, request.name, request.version) if request.name else tenant_of(context)
        answer = await self._service.model_statistics(request.name, request.version, context.time_remaining())
        if tenant is not None and not request.name:
            visible = [s for s in answer.model_stats if self._ownership.visible(s.name, tenant)]
            del answer.model_stats[:]
            answer.model_stats.extend(visible)
        return answer

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryIndexResponse:
        tenant = tenant_of(context)
        answer = await self._service.repository_index(request.ready, context.time_remaining())
        if tenant is not None:
            visible = [m for m in answer.models if self._ownership.visible(m.name, tenant)]
            del answer.models[:]
            answer.models.extend(visible)
        return answer

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelLoadResponse:
        refuse_tenant_callers(tenant_of(context), "RepositoryModelLoad")
        await self._service.load(request.model_name)
        return _LOADED

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelUnloadResponse:
        refuse_tenant_callers(tenant_of(context), "RepositoryModelUnload")
        await self._service.unload(request.model_name)
        return _UNLOADED
