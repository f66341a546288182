"""inference.GRPCInferenceService over :class:`InferenceService`: protobuf in, protobuf out, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as svc_grpc
from modelserve_model_server.service import EXTENSIONS, SERVER_NAME, SERVER_VERSION, InferenceService

_LIVE = pb.ServerLiveResponse(live=True)
_READY = pb.ServerReadyResponse(ready=True)
_NOT_READY = pb.ServerReadyResponse(ready=False)
_LOADED = pb.RepositoryModelLoadResponse()
_UNLOADED = pb.RepositoryModelUnloadResponse()


class InferenceServicer(svc_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 / Triton gRPC API."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service
        self._metadata = pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return _LIVE

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return _READY if self._service.server_ready() else _NOT_READY

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return self._metadata

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return self._service.model_metadata(request.name, request.version)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return await self._service.infer(request, context.time_remaining())

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for response in self._service.stream_infer(request_iterator):
            yield response

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        return self._service.model_config(request.name, request.version)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        return self._service.model_statistics(request.name, request.version)

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        return self._service.repository_index(request.ready)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        await self._service.load(request.model_name)
        return _LOADED

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self._service.unload(request.model_name)
        return _UNLOADED
