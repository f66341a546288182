"""gRPC servicer: converts protobuf to domain, calls one service method, converts back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelserve.registry.v1 import registry_service_pb2 as pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.identity import Caller
from modelserve_registry import convert as c
from modelserve_registry import convert_predictions as cp
from modelserve_registry.service import RegistryService

Ctx = grpc.aio.ServicerContext[Any, Any]


def _caller(context: Ctx) -> Caller:
    return c.caller_from_metadata(context.invocation_metadata())


class RegistryServicer(registry_grpc.RegistryServiceServicer):
    def __init__(self, service: RegistryService) -> None:
        self._s = service

    async def CreateModel(self, request: pb.CreateModelRequest, context: Ctx) -> pb.CreateModelResponse:
        model = await self._s.create_model(_caller(context), c.model_from_pb(request.model))
        return pb.CreateModelResponse(model=c.model_to_pb(model))

    async def GetModel(self, request: pb.GetModelRequest, context: Ctx) -> pb.GetModelResponse:
        return pb.GetModelResponse(
            model=c.model_to_pb(await self._s.get_model(_caller(context), request.model))
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: Ctx) -> pb.ListModelsResponse:
        models, token = await self._s.list_models(
            _caller(context),
            filter=request.filter,
            order_by=request.order_by,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListModelsResponse(models=[c.model_to_pb(m) for m in models], next_page_token=token)

    async def UpdateModel(self, request: pb.UpdateModelRequest, context: Ctx) -> pb.UpdateModelResponse:
        paths = list(request.update_mask.paths) or c.implied_model_mask(request.model)
        model = await self._s.update_model(
            _caller(context), c.model_from_pb(request.model), request.model.etag, paths
        )
        return pb.UpdateModelResponse(model=c.model_to_pb(model))

    async def DeleteModel(self, request: pb.DeleteModelRequest, context: Ctx) -> pb.DeleteModelResponse:
        await self._s.delete_model(_caller(context), request.model, request.etag)
        return pb.DeleteModelResponse()

    async def CreateModelVersion(
        self, request: pb.CreateModelVersionRequest, context: Ctx
    ) -> pb.CreateModelVersionResponse:
        version = await self._s.create_version(
            _caller(context), request.model, c.model_version_from_pb(request.model_version)
        )
        return pb.CreateModelVersionResponse(model_version=c.model_version_to_pb(version))

    async def UploadModelVersion(
        self, request_iterator: AsyncIterator[pb.UploadModelVersionRequest], context: Ctx
    ) -> pb.UploadModelVersionResponse:
        meta, chunks = await c.upload_from_pb(request_iterator, self._s.upload_idle_timeout_s)
        version = await self._s.upload_version(
            _caller(context), meta.model, c.model_version_from_pb(meta.model_version), meta.size_bytes, chunks
        )
        return pb.UploadModelVersionResponse(model_version=c.model_version_to_pb(version))

    async def DownloadModelVersion(
        self, request: pb.DownloadModelVersionRequest, context: Ctx
    ) -> AsyncIterator[pb.DownloadModelVersionResponse]:
        download = await self._s.download_version(_caller(context), request.model, request.version)
        yield c.download_metadata_to_pb(download)
        async for chunk in download.chunks:
            yield pb.DownloadModelVersionResponse(chunk=chunk)

    async def GetModelVersion(
        self, request: pb.GetModelVersionRequest, context: Ctx
    ) -> pb.GetModelVersionResponse:
        version = await self._s.get_version(_caller(context), request.model, request.version)
        return pb.GetModelVersionResponse(model_version=c.model_version_to_pb(version))

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: Ctx
    ) -> pb.ListModelVersionsResponse:
        versions, token = await self._s.list_versions(
            _caller(context), request.model, request.page_size, request.page_token
        )
        return pb.ListModelVersionsResponse(
            model_versions=[c.model_version_to_pb(v) for v in versions], next_page_token=token
        )

    async def UpdateModelVersion(
        self, request: pb.UpdateModelVersionRequest, context: Ctx
    ) -> pb.UpdateModelVersionResponse:
        mv = request.model_version
        paths = list(request.update_mask.paths) or c.implied_version_mask(mv)
        version = await self._s.update_version(_caller(context), c.model_version_from_pb(mv), mv.etag, paths)
        return pb.UpdateModelVersionResponse(model_version=c.model_version_to_pb(version))

    async def DeleteModelVersion(
        self, request: pb.DeleteModelVersionRequest, context: Ctx
    ) -> pb.DeleteModelVersionResponse:
        await self._s.delete_version(_caller(context), request.model, request.version, request.etag)
        return pb.DeleteModelVersionResponse()

    async def SetAlias(self, request: pb.SetAliasRequest, context: Ctx) -> pb.SetAliasResponse:
        alias = await self._s.set_alias(
            _caller(context), request.model, request.alias, request.version, request.etag
        )
        return pb.SetAliasResponse(alias=c.alias_to_pb(alias))

    async def GetAlias(self, request: pb.GetAliasRequest, context: Ctx) -> pb.GetAliasResponse:
        alias = await self._s.get_alias(_caller(context), request.model, request.alias)
        return pb.GetAliasResponse(alias=c.alias_to_pb(alias))

    async def ListAliases(self, request: pb.ListAliasesRequest, context: Ctx) -> pb.ListAliasesResponse:
        aliases = await self._s.list_aliases(_caller(context), request.model)
        return pb.ListAliasesResponse(aliases=[c.alias_to_pb(a) for a in aliases])

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Ctx) -> pb.DeleteAliasResponse:
        await self._s.delete_alias(_caller(context), request.model, request.alias, request.etag)
        return pb.DeleteAliasResponse()

    async def UpdateDeployment(
        self, request: pb.UpdateDeploymentRequest, context: Ctx
    ) -> pb.UpdateDeploymentResponse:
        deployment = await self._s.update_deployment(
            _caller(context), c.deployment_from_pb(request.deployment), request.deployment.etag
        )
        return pb.UpdateDeploymentResponse(deployment=c.deployment_to_pb(deployment))

    async def RollbackDeployment(
        self, request: pb.RollbackDeploymentRequest, context: Ctx
    ) -> pb.RollbackDeploymentResponse:
        deployment = await self._s.rollback_deployment(_caller(context), request.model, request.etag)
        return pb.RollbackDeploymentResponse(deployment=c.deployment_to_pb(deployment))

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Ctx) -> pb.GetDeploymentResponse:
        deployment = await self._s.get_deployment(_caller(context), request.model)
        return pb.GetDeploymentResponse(deployment=c.deployment_to_pb(deployment))

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: Ctx
    ) -> pb.ListDeploymentsResponse:
        deployments, revision = await self._s.list_deployments(_caller(context))
        return pb.ListDeploymentsResponse(
            deployments=[c.deployment_to_pb(d) for d in deployments], revision=revision
        )

    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.WatchResponse]:
        async for change in self._s.watch(_caller(context), request.after_revision, request.model):
            reply = c.change_to_pb_or_skip(change)
            if reply is not None:
                yield reply

    async def CreateTenant(self, request: pb.CreateTenantRequest, context: Ctx) -> pb.CreateTenantResponse:
        tenant = await self._s.create_tenant(_caller(context), c.tenant_from_pb(request.tenant))
        return pb.CreateTenantResponse(tenant=c.tenant_to_pb(tenant))

    async def GetTenant(self, request: pb.GetTenantRequest, context: Ctx) -> pb.GetTenantResponse:
        tenant = await self._s.get_tenant(_caller(context), request.tenant)
        return pb.GetTenantResponse(tenant=c.tenant_to_pb(tenant))

    async def ListTenants(self, request: pb.ListTenantsRequest, context: Ctx) -> pb.ListTenantsResponse:
        tenants, token = await self._s.list_tenants(_caller(context), request.page_size, request.page_token)
        return pb.ListTenantsResponse(tenants=[c.tenant_to_pb(t) for t in tenants], next_page_token=token)

    async def UpdateTenant(self, request: pb.UpdateTenantRequest, context: Ctx) -> pb.UpdateTenantResponse:
        paths = list(request.update_mask.paths) or c.implied_tenant_mask(request.tenant)
        tenant = await self._s.update_tenant(
            _caller(context), c.tenant_from_pb(request.tenant), request.tenant.etag, paths
        )
        return pb.UpdateTenantResponse(tenant=c.tenant_to_pb(tenant))

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Ctx) -> pb.CreateApiKeyResponse:
        key, secret = await self._s.create_key(
            _caller(context), request.tenant, c.api_key_from_pb(request.api_key)
        )
        return pb.CreateApiKeyResponse(api_key=c.api_key_to_pb(key), secret=secret)

    async def GetApiKey(self, request: pb.GetApiKeyRequest, context: Ctx) -> pb.GetApiKeyResponse:
        key = await self._s.get_key(_caller(context), request.tenant, request.key)
        return pb.GetApiKeyResponse(api_key=c.api_key_to_pb(key))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Ctx) -> pb.ListApiKeysResponse:
        keys = await self._s.list_keys(_caller(context), request.tenant)
        return pb.ListApiKeysResponse(api_keys=[c.api_key_to_pb(k) for k in keys])

    async def RotateApiKey(self, request: pb.RotateApiKeyRequest, context: Ctx) -> pb.RotateApiKeyResponse:
        grace = c.duration_s(request.grace_period) if request.HasField("grace_period") else None
        key, secret = await self._s.rotate_key(
            _caller(context), request.tenant, request.key, grace, request.etag
        )
        return pb.RotateApiKeyResponse(api_key=c.api_key_to_pb(key), secret=secret)

    async def DeleteApiKey(self, request: pb.DeleteApiKeyRequest, context: Ctx) -> pb.DeleteApiKeyResponse:
        await self._s.delete_key(_caller(context), request.tenant, request.key)
        return pb.DeleteApiKeyResponse()

    async def VerifyApiKey(self, request: pb.VerifyApiKeyRequest, context: Ctx) -> pb.VerifyApiKeyResponse:
        key, limit, expires = await self._s.verify_key(_caller(context), request.secret)
        return c.verify_to_pb(key, limit, expires)

    async def WritePredictionLogs(
        self, request: pb.WritePredictionLogsRequest, context: Ctx
    ) -> pb.WritePredictionLogsResponse:
        logs = [cp.record_from_pb(log, i) for i, log in enumerate(request.logs)]
        stored = await self._s.write_prediction_logs(_caller(context), logs)
        return pb.WritePredictionLogsResponse(stored=stored)

    async def ListPredictionLogs(
        self, request: pb.ListPredictionLogsRequest, context: Ctx
    ) -> pb.ListPredictionLogsResponse:
        logs, token = await self._s.list_prediction_logs(
            _caller(context),
            request.model,
            request.version,
            cp.window_from_pb(request),
            request.page_size,
            request.page_token,
        )
        return pb.ListPredictionLogsResponse(logs=[cp.record_to_pb(r) for r in logs], next_page_token=token)

    async def SetDriftReference(
        self, request: pb.SetDriftReferenceRequest, context: Ctx
    ) -> pb.SetDriftReferenceResponse:
        sample = [cp.tensor_from_pb(t) for t in request.sample]
        features = await self._s.set_drift_reference(
            _caller(context), request.model, request.version, sample, request.from_logged_requests
        )
        return pb.SetDriftReferenceResponse(features=features)

    async def GetModelVersionDrift(
        self, request: pb.GetModelVersionDriftRequest, context: Ctx
    ) -> pb.GetModelVersionDriftResponse:
        window = c.duration_s(request.window) if request.HasField("window") else None
        scores = await self._s.model_version_drift(_caller(context), request.model, request.version, window)
        return cp.drift_to_pb(scores)
