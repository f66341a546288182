"""Clients of other services: the model server (``inference.GRPCInferenceService`` over one pooled
channel) and, optionally, the registry for alias resolution and model ownership; AioRpcError is
mapped to ServiceError (UNAVAILABLE stays Unavailable so the node retry applies).

Every call made for a tenant carries its identity (``x-modelserve-tenant`` and
``x-modelserve-scopes``), so the model server and the registry enforce ownership themselves; a
trusted caller's calls carry none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from modelserve.inference.v2 import grpc_service_pb2 as infer_pb
from modelserve.inference.v2 import grpc_service_pb2_grpc as infer_grpc
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common import errors
from modelserve_common.channels import create_channel
from modelserve_common.context import SCOPES_HEADER, TENANT_HEADER
from modelserve_common.identity import TRUSTED, Caller
from modelserve_common.tensors import BY_NAME, encode_bytes, from_raw, to_raw
from modelserve_orchestrator.pipeline import ModelCaller
from modelserve_orchestrator.settings import OrchestratorSettings

log = structlog.get_logger(__name__)
MAX_VERSION_DIGITS = 18  # a version number fits a signed 64-bit column


def map_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> errors.ServiceError:
    return errors.from_status(exc.code(), f"{what}: {exc.code().name}: {exc.details() or ''}".rstrip(": "))


Metadata = tuple[tuple[str, str], ...]


def identity_metadata(caller: Caller, scopes: frozenset[str] | None = None) -> Metadata | None:
    """The gRPC metadata that tells another service who the caller is (None: a trusted caller,
    which sends no tenant). ``scopes`` replaces the caller's scopes."""
    if caller.tenant is None:
        return None
    return (
        (TENANT_HEADER, caller.tenant),
        (SCOPES_HEADER, ",".join(sorted(caller.scopes if scopes is None else scopes))),
    )


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
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: tuple[str, ...],
        timeout_s: float,
        caller: Caller,
    ) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
        request = infer_pb.ModelInferRequest(model_name=model, model_version=version)
        for name, array in inputs.items():
            datatype, shape, raw = to_raw(array)
            request.inputs.add(name=name, datatype=datatype, shape=shape)
            request.raw_input_contents.append(raw)
        for o in outputs:
            request.outputs.add(name=o)
        try:
            response = await self._stub.ModelInfer(
                request, timeout=timeout_s, metadata=identity_metadata(caller)
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, f"model {model!r}") from None
        result: dict[str, np.ndarray[Any, Any]] = {}
        for i, out in enumerate(response.outputs):
            if i < len(response.raw_output_contents):
                raw = response.raw_output_contents[i]
            else:
                raw = _contents_to_raw(out)
            result[out.name] = from_raw(raw, out.datatype, list(out.shape), f"model output {out.name!r}")
        return result, response.model_version

    async def may_use(self, model: str, caller: Caller, timeout_s: float) -> bool:
        """Asks the model server (ModelMetadata with the caller's identity): it answers NOT_FOUND
        for a model the tenant may not call (another tenant's, a platform model not in its shared
        list) exactly as for a missing one."""
        if caller.is_trusted:
            return True
        try:
            await self._stub.ModelMetadata(
                infer_pb.ModelMetadataRequest(name=model),
                timeout=timeout_s,
                metadata=identity_metadata(caller),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise map_rpc_error(exc, f"model {model!r}") from None
        return True


@dataclass(frozen=True)
class ModelRecord:
    """What the registry says about a model: its owner and whether it is shared."""

    tenant: str
    shared: bool


class RegistryClient:
    """Reads models and model versions from the registry: versions as an in-cluster caller (no
    tenant metadata), models as the caller asked for."""

    def __init__(self, settings: OrchestratorSettings, tracer_provider: TracerProvider | None = None) -> None:
        self._channel = create_channel(
            settings.registry_url,
            settings,
            tracer_provider=tracer_provider,
            retry_methods=[
                "modelserve.registry.v1.RegistryService/GetModelVersion",
                "modelserve.registry.v1.RegistryService/GetModel",
            ],
        )
        self._stub = registry_grpc.RegistryServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def version_number(self, model: str, ref: str, timeout_s: float) -> str:
        """The version number an alias (or "latest") points at."""
        try:
            resp = await self._stub.GetModelVersion(
                registry_pb.GetModelVersionRequest(model=model, version=ref), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, f"registry: model {model!r} version {ref!r}") from None
        return str(resp.model_version.version)

    async def model(self, model: str, caller: Caller, timeout_s: float) -> ModelRecord | None:
        """The model as ``caller`` sees it; None when the registry answers NOT_FOUND (missing, or
        another tenant's and not shared) or INVALID_ARGUMENT (a name the registry cannot hold,
        so not a registry model). A tenant asks with the ``read`` scope: the question is whether
        the tenant can see the model, not what the caller's key may do."""
        try:
            resp = await self._stub.GetModel(
                registry_pb.GetModelRequest(model=model),
                timeout=timeout_s,
                metadata=identity_metadata(caller, frozenset({"read"})),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise map_rpc_error(exc, f"registry: model {model!r}") from None
        return ModelRecord(resp.model.tenant, resp.model.shared)


class AliasResolvingCaller:
    """A ModelCaller that resolves a version that is not a number through the registry, then
    calls the model server with the number. Answers are reused for ``ttl_s``; concurrent misses
    for one alias share one registry call; while the registry is unavailable the last answer is
    used, and without one the node fails UNAVAILABLE (so its retry policy applies)."""

    def __init__(self, caller: ModelCaller, registry: RegistryClient, ttl_s: float) -> None:
        self._caller = caller
        self._registry = registry
        self._ttl = ttl_s
        self._known: dict[tuple[str, str], tuple[str, float]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def infer(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: tuple[str, ...],
        timeout_s: float,
        caller: Caller,
    ) -> tuple[dict[str, np.ndarray[Any, Any]], str]:
        if version and not is_version_number(version):
            version = await self._resolve(model, version, timeout_s)
        return await self._caller.infer(model, version, inputs, outputs, timeout_s, caller)

    async def may_use(self, model: str, caller: Caller, timeout_s: float) -> bool:
        """The registry first, with the tenant's identity: a model it shows the tenant may be
        used when the tenant owns it or it is shared (so an own model not deployed yet may be
        named). One it hides but knows (asked as a trusted caller) belongs to another tenant: no.
        A name the registry does not know is a local repository model of the model server, which
        decides (platform models only for the names in its shared list)."""
        if caller.is_trusted:
            return True
        seen = await self._registry.model(model, caller, timeout_s)
        if seen is not None:
            return seen.shared or seen.tenant in ("", caller.tenant)
        if await self._registry.model(model, TRUSTED, timeout_s) is not None:
            return False
        return await self._caller.may_use(model, caller, timeout_s)

    async def _resolve(self, model: str, ref: str, timeout_s: float) -> str:
        key = (model, ref)
        known = self._known.get(key)
        if known is not None and time.monotonic() - known[1] < self._ttl:
            return known[0]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup(key, known, timeout_s))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._lookup_done(key, t))
        return await asyncio.shield(task)

    def _lookup_done(self, key: tuple[str, str], task: asyncio.Future[str]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here: the callers re-raise it

    async def _lookup(self, key: tuple[str, str], known: tuple[str, float] | None, timeout_s: float) -> str:
        try:
            number = await self._registry.version_number(key[0], key[1], timeout_s)
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            if known is None:
                raise
            log.warning("alias.stale", model=key[0], alias=key[1], version=known[0], error=exc.message)
            return known[0]
        self._known[key] = (number, time.monotonic())
        return number


def is_version_number(ref: str) -> bool:
    """ASCII digits that fit a 64-bit version column ("²".isdigit() is True, int("²") raises);
    anything else is an alias the registry resolves (or answers NOT_FOUND for)."""
    return ref.isascii() and ref.isdigit() and len(ref) <= MAX_VERSION_DIGITS


def _contents_to_raw(out: infer_pb.ModelInferResponse.InferOutputTensor) -> bytes:
    """Typed contents (a server that does not send raw) to the raw layout."""
    dt = BY_NAME.get(out.datatype)
    if dt is None or dt.contents_field is None:
        raise errors.Internal(f"model output {out.name!r}: datatype {out.datatype} without raw contents")
    values = getattr(out.contents, dt.contents_field)
    if dt.size == 0:
        return encode_bytes(values)
    return np.array(values, dtype=dt.dtype).tobytes()
