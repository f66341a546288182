"""A small servicer used to exercise the foundation through the real interceptor chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from modelserve_common import errors
from modelserve_common.context import current_request_id

SERVICE = "inference.GRPCInferenceService"


class ProbeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ModelReady(name=...) drives behaviour: 'raise:<ErrorClass>', 'boom', 'sleep:<s>', 'rid'."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext):  # noqa: N802
        name = request.name
        if name.startswith("raise:"):
            raise getattr(errors, name.split(":", 1)[1])(f"because {request.version}")
        if name == "boom":
            raise RuntimeError("secret internals")
        if name.startswith("sleep:"):
            self.started.set()
            await asyncio.sleep(float(name.split(":", 1)[1]))
        if name == "rid":
            return pb.ModelReadyResponse(ready=current_request_id() is not None)
        return pb.ModelReadyResponse(ready=True)

    async def ModelStreamInfer(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for req in request_iterator:
            if req.model_name == "fail":
                raise errors.InvalidArgument("bad stream item")
            yield pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse(id=req.id))


def probe_service(servicer: ProbeServicer):
    from modelserve_common.server import GrpcService

    return GrpcService(SERVICE, lambda s: pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, s))
