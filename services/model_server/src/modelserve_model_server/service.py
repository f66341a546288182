"""The inference service: the rules behind every RPC of inference.GRPCInferenceService."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import structlog

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServiceError
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.prediction_logger import PredictionLogger
from modelserve_model_server.routing_table import ModelVersion

log = structlog.get_logger(__name__)

SERVER_NAME = "modelserve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("model_repository", "model_configuration", "statistics", "schedule_policy")

_now = time.perf_counter_ns
_NO_DEADLINE_S = 1e7
"""grpc reports a call without a deadline as a huge remaining time."""


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, InvalidArgument):
        return "invalid"
    if isinstance(exc, ResourceExhausted):
        return "rejected"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    return "error"


def _int_param(request: pb.ModelInferRequest, key: str) -> int | None:
    params = request.parameters
    if key not in params:
        return None
    p = params[key]
    kind = p.WhichOneof("parameter_choice")
    if kind in ("int64_param", "uint64_param"):
        return int(getattr(p, kind))
    raise InvalidArgument(f"parameter {key!r} must be an integer (int64_param or uint64_param), got {kind}")


class RemoteModels(Protocol):
    """Models served elsewhere, listed beside the local ones: the Triton replica pool
    (triton_pool.py). RPCs naming one of its models never reach this service (the Triton router
    sends them to Triton); the listings without a name do, and include its models."""

    async def statistics(self, remaining: float | None) -> list[pb.ModelStatistics]:
        """Statistics of every remote model (``remaining``: the caller's time left)."""
        ...

    async def repository_index(
        self, ready_only: bool, remaining: float | None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        """RepositoryIndex rows of every remote model."""
        ...


class InferenceService:
    """Inference, metadata, statistics and repository control over one :class:`ModelManager`
    (and, in the listings, the :class:`RemoteModels` served through Triton)."""

    def __init__(
        self,
        manager: ModelManager,
        stream_max_in_flight: int = 64,
        mirror_max_in_flight: int = 64,
        *,
        remote: RemoteModels | None = None,
    ) -> None:
        self.manager = manager
        self._remote = remote
        self._stream_max_in_flight = stream_max_in_flight
        self._mirror_max_in_flight = mirror_max_in_flight
        self._mirroring: set[asyncio.Task[None]] = set()
        self.prediction_logger: PredictionLogger | None = None  # set by server.py (registry deployments)

    # -- health and metadata ----------------------------------------------------------------------

    def server_ready(self) -> bool:
        return self.manager.ready

    def model_ready(self, name: str, version: str) -> bool:
        try:
            self.manager.get(name, version)
        except ServiceError:
            return False
        return True

    def model_metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        mv = self.manager.get(name, version)
        spec = mv.spec
        versions = [v.version_str for v in self.manager.versions(name)] if not version else [mv.version_str]
        tm = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=spec.name,
            versions=versions,
            platform=spec.platform,
            inputs=[
                tm(name=t.name, datatype=t.datatype.name, shape=spec.input_shape(t)) for t in spec.inputs
            ],
            outputs=[
                tm(name=t.name, datatype=t.datatype.name, shape=spec.input_shape(t)) for t in spec.outputs
            ],
        )

    def model_config(self, name: str, version: str) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.manager.get(name, version).spec.config)

    async def model_statistics(
        self, name: str, version: str, remaining: float | None = None
    ) -> pb.ModelStatisticsResponse:
        """Statistics of ``name`` (every version, or ``version``); without a name, of every local
        model and then every remote one."""
        if name:
            found = [self.manager.get(name, version)] if version else self.manager.versions(name)
            return pb.ModelStatisticsResponse(model_stats=[mv.stats.to_pb() for mv in found])
        if version:
            raise InvalidArgument("a version needs a model name")
        answer = pb.ModelStatisticsResponse(
            model_stats=[mv.stats.to_pb() for mv in self.manager.all_versions()]
        )
        if self._remote is not None:
            answer.model_stats.extend(await self._remote.statistics(remaining))
        return answer

    # -- inference -----------------------------------------------------------------------------

    async def infer(
        self, request: pb.ModelInferRequest, timeout_s: float | None = None
    ) -> pb.ModelInferResponse:
        mv = self.manager.get(request.model_name, request.model_version)
        if self.manager.mirrors and not request.model_version:
            self._mirror(request)
        if self.prediction_logger is not None:  # samples by the deployment's policy; never fails
            return await self.prediction_logger.observe(
                mv.name, mv.version, request, self._infer(mv, request, timeout_s)
            )
        return await self._infer(mv, request, timeout_s)

    def _mirror(self, request: pb.ModelInferRequest) -> None:
        """Fire-and-forget copies of a versionless request to the model's mirror versions (the
        registry's shadow targets); answers and errors are dropped, and copies beyond
        ``mirror_max_in_flight`` are skipped so a slow mirror never holds the served version up."""
        for mirror in self.manager.mirrors.get(request.model_name, ()):
            if len(self._mirroring) >= self._mirror_max_in_flight:
                mirror.stats.outcome("rejected")
                continue
            task = asyncio.ensure_future(self._shadow(mirror, request))
            self._mirroring.add(task)
            task.add_done_callback(self._mirroring.discard)

    async def _shadow(self, mv: ModelVersion, request: pb.ModelInferRequest) -> None:
        try:
            await self._infer(mv, request)
        except Exception:  # counted in the mirror's statistics; nobody waits for this answer
            pass

    async def _infer(
        self, mv: ModelVersion, request: pb.ModelInferRequest, timeout_s: float | None = None
    ) -> pb.ModelInferResponse:
        stats = mv.stats
        start = _now()
        try:
            decoded = mv.codec.decode(request)
            if request.parameters:
                priority = _int_param(request, "priority") or 0
                timeout_us = _int_param(request, "timeout")
            else:
                priority, timeout_us = 0, None
            if timeout_s is not None and timeout_s > _NO_DEADLINE_S:
                timeout_s = None
            outputs = await mv.scheduler.submit(decoded, priority, timeout_us, timeout_s)
            response = mv.codec.encode(request, decoded, outputs)
        except BaseException as exc:
            stats.fail.add(_now() - start)
            stats.outcome(_outcome(exc))
            if not isinstance(exc, ServiceError | asyncio.CancelledError):
                log.error("model.encode_failed", model=mv.name, exc_info=exc)
            raise
        stats.succeeded(_now() - start)
        return response

    async def stream_infer(
        self,
        requests: AsyncIterator[pb.ModelInferRequest],
        check: Callable[[pb.ModelInferRequest], None] | None = None,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Answers each request of the stream in order; a failing request is reported in its
        response's ``error_message`` and the stream goes on. Up to ``stream_max_in_flight``
        requests run at once. ``check`` (the caller's ownership check, ownership.py) runs first
        for each request; what it raises is that request's error."""
        pending: asyncio.Queue[asyncio.Task[pb.ModelStreamInferResponse] | None] = asyncio.Queue(
            self._stream_max_in_flight
        )

        async def one(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                if check is not None:
                    check(request)
                return pb.ModelStreamInferResponse(infer_response=await self.infer(request))
            except Exception as exc:
                if isinstance(exc, ServiceError):
                    message = f"[{exc.code.name}] {exc.message}"
                else:
                    log.error("stream.request_failed", model=request.model_name, exc_info=exc)
                    message = "[INTERNAL] internal error"
                return pb.ModelStreamInferResponse(
                    error_message=message,
                    infer_response=pb.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version, id=request.id
                    ),
                )

        broken: list[Exception] = []

        async def reader() -> None:
            try:
                async for request in requests:
                    await pending.put(asyncio.ensure_future(one(request)))
            except Exception as exc:  # the request stream broke: answer what arrived, then fail
                broken.append(exc)
            await pending.put(None)

        read = asyncio.ensure_future(reader())
        try:
            while True:
                task = await pending.get()
                if task is None:
                    break
                yield await task
            if broken:
                raise broken[0]
        finally:
            read.cancel()
            while not pending.empty():
                t = pending.get_nowait()
                if t is not None:
                    t.cancel()

    # -- repository ----------------------------------------------------------------------------

    async def repository_index(
        self, ready_only: bool, remaining: float | None = None
    ) -> pb.RepositoryIndexResponse:
        """The local repository's rows, then the remote models' rows."""
        mi = pb.RepositoryIndexResponse.ModelIndex
        answer = pb.RepositoryIndexResponse(
            models=[
                mi(name=r.name, version=r.version, state=r.state, reason=r.reason)
                for r in self.manager.index(ready_only)
            ]
        )
        if self._remote is not None:
            answer.models.extend(await self._remote.repository_index(ready_only, remaining))
        return answer

    async def load(self, name: str) -> None:
        await self.manager.load(name)

    async def unload(self, name: str) -> None:
        await self.manager.unload(name)


__all__ = ["InferenceService", "SERVER_NAME", "SERVER_VERSION", "EXTENSIONS", "ResourceExhausted"]
