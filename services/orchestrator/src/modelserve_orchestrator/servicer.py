"""The gRPC servicer: pb <-> domain only; every rule lives in service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelserve.orchestrator.v1 import orchestrator_service_pb2 as pb
from modelserve.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from modelserve_common.identity import Caller
from modelserve_orchestrator import convert
from modelserve_orchestrator.domain import ExecutionState
from modelserve_orchestrator.service import OrchestratorService

Ctx = grpc.aio.ServicerContext[Any, Any]


def _caller(context: Ctx) -> Caller:
    """``x-modelserve-tenant`` absent: a trusted in-cluster caller (sees every tenant). Present:
    that tenant with the scopes in ``x-modelserve-scopes``."""
    return Caller.from_metadata(context.invocation_metadata())


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, service: OrchestratorService) -> None:
        self._service = service

    async def CreatePipeline(
        self, request: pb.CreatePipelineRequest, context: Ctx
    ) -> pb.CreatePipelineResponse:
        p = await self._service.put_pipeline(
            convert.pipeline_from_pb(request.pipeline), new=True, caller=_caller(context)
        )
        return pb.CreatePipelineResponse(pipeline=convert.pipeline_to_pb(p))

    async def UpdatePipeline(
        self, request: pb.UpdatePipelineRequest, context: Ctx
    ) -> pb.UpdatePipelineResponse:
        p = await self._service.put_pipeline(
            convert.pipeline_from_pb(request.pipeline), new=False, caller=_caller(context)
        )
        return pb.UpdatePipelineResponse(pipeline=convert.pipeline_to_pb(p))

    async def GetPipeline(self, request: pb.GetPipelineRequest, context: Ctx) -> pb.GetPipelineResponse:
        p = await self._service.get_pipeline(request.pipeline, request.version, _caller(context))
        return pb.GetPipelineResponse(pipeline=convert.pipeline_to_pb(p))

    async def ListPipelines(self, request: pb.ListPipelinesRequest, context: Ctx) -> pb.ListPipelinesResponse:
        items, token = await self._service.list_pipelines(
            request.page_size, request.page_token, _caller(context)
        )
        return pb.ListPipelinesResponse(
            pipelines=[convert.pipeline_to_pb(p) for p in items], next_page_token=token
        )

    async def DeletePipeline(
        self, request: pb.DeletePipelineRequest, context: Ctx
    ) -> pb.DeletePipelineResponse:
        await self._service.delete_pipeline(request.pipeline, _caller(context))
        return pb.DeletePipelineResponse()

    async def RunPipeline(self, request: pb.RunPipelineRequest, context: Ctx) -> pb.RunPipelineResponse:
        result = await self._service.run(convert.run_request(request), _caller(context))
        return convert.run_result_to_pb(result)

    async def StreamPipelineRun(
        self, request: pb.StreamPipelineRunRequest, context: Ctx
    ) -> AsyncIterator[pb.StreamPipelineRunResponse]:
        async for item in self._service.stream(convert.run_request(request), _caller(context)):
            yield convert.stream_item_to_pb(item)

    async def CreateExecution(
        self, request: pb.CreateExecutionRequest, context: Ctx
    ) -> pb.CreateExecutionResponse:
        webhook = convert.webhook_from_pb(request.webhook, request.HasField("webhook"))
        ex, replayed = await self._service.create_execution(
            convert.run_request(request), request.idempotency_key, webhook, _caller(context)
        )
        return pb.CreateExecutionResponse(execution=convert.execution_to_pb(ex), replayed=replayed)

    async def GetExecution(self, request: pb.GetExecutionRequest, context: Ctx) -> pb.GetExecutionResponse:
        ex = await self._service.get_execution(request.execution, _caller(context))
        return pb.GetExecutionResponse(execution=convert.execution_to_pb(ex))

    async def ListExecutions(
        self, request: pb.ListExecutionsRequest, context: Ctx
    ) -> pb.ListExecutionsResponse:
        items, token = await self._service.list_executions(
            request.pipeline,
            ExecutionState(request.state),
            request.page_size,
            request.page_token,
            _caller(context),
        )
        return pb.ListExecutionsResponse(
            executions=[convert.execution_to_pb(e) for e in items], next_page_token=token
        )

    async def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: Ctx
    ) -> pb.CancelExecutionResponse:
        ex = await self._service.cancel_execution(request.execution, request.reason, _caller(context))
        return pb.CancelExecutionResponse(execution=convert.execution_to_pb(ex))

    async def WatchExecution(
        self, request: pb.WatchExecutionRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchExecutionResponse]:
        async for event in self._service.watch(request.execution, _caller(context)):
            yield convert.event_to_pb(event)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Ctx
    ) -> pb.ListWebhookDeliveriesResponse:
        items = await self._service.list_deliveries(request.execution, _caller(context))
        return pb.ListWebhookDeliveriesResponse(deliveries=[convert.delivery_to_pb(w) for w in items])
