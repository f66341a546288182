"""The model server client: ``inference.GRPCInferenceService`` over one pooled channel, with
AioRpcError mapped to ServiceError (UNAVAILABLE stays Unavailable so the node retry applies)."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2 as infer_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as infer_grpc
from modelserve_common import errors
from modelserve_common.channels import create_channel
from modelserve_orchestrator import tensors
from modelserve_orchestrator.settings import OrchestratorSettings

_BY_CODE: dict[grpc.StatusCode, type[errors.ServiceError]] = {c.code: c for c in errors.all_error_classes()}


def map_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> errors.ServiceError:
    cls = _BY_CODE.get(exc.code(), errors.Internal)
    return cls(f"{what}: {exc.code().name}: {exc.details() or ''}".rstrip(": "))


class InferenceClient:
    """Calls models on the model server (implements pipeline.ModelCaller)."""

    def __init__(self, settings: OrchestratorSettings, tracer_provider: TracerProvider | None = None) -> None:
        self._channel = create_channel(settings.model_server_url, settings, tracer_provider=tracer_provider)
        self._stub = infer_grpc.GRPCInferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def health(self, service: str, timeout_s: float) -> str | None:
        """None when the model server's grpc.health.v1 Check reports SERVING, else the reason."""
        try:
            resp = await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return f"model server health check: {exc.code().name}"
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            return f"model server is {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
        return None

    async def infer(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, np.ndarray],
        outputs: tuple[str, ...],
        timeout_s: float,
    ) -> tuple[dict[str, np.ndarray], str]:
        request = infer_pb.ModelInferRequest(model_name=model, model_version=version)
        for name, array in inputs.items():
            datatype, shape, raw = tensors.to_raw(array)
            request.inputs.add(name=name, datatype=datatype, shape=shape)
            request.raw_input_contents.append(raw)
        for o in outputs:
            request.outputs.add(name=o)
        try:
            response = await self._stub.ModelInfer(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, f"model {model!r}") from None
        result: dict[str, np.ndarray] = {}
        for i, out in enumerate(response.outputs):
            if i < len(response.raw_output_contents):
                raw = response.raw_output_contents[i]
            else:
                raw = _contents_to_raw(out)
            result[out.name] = tensors.from_raw(out.name, out.datatype, list(out.shape), raw)
        return result, response.model_version


def _contents_to_raw(out: infer_pb.ModelInferResponse.InferOutputTensor) -> bytes:
    """Typed contents (a server that does not send raw) to the raw layout."""
    c = out.contents
    dt = out.datatype
    if dt == "BYTES":
        return tensors.to_raw(np.array(list(c.bytes_contents), dtype=object))[2]
    values: list[float] | list[int] | list[bool]
    if dt == "BOOL":
        values = list(c.bool_contents)
    elif dt in ("FP32",):
        values = list(c.fp32_contents)
    elif dt == "FP64":
        values = list(c.fp64_contents)
    elif dt in ("INT8", "INT16", "INT32"):
        values = list(c.int_contents)
    elif dt == "INT64":
        values = list(c.int64_contents)
    elif dt in ("UINT8", "UINT16", "UINT32"):
        values = list(c.uint_contents)
    elif dt == "UINT64":
        values = list(c.uint64_contents)
    else:
        raise errors.Internal(f"model output {out.name!r}: datatype {dt} without raw contents")
    return np.array(values, dtype=np.dtype(tensors.DTYPES[dt])).tobytes()
