"""Workers of one model server answer as one server (``--workers N``).

Each worker also serves its gRPC API on a unix socket ``<worker_dir>/worker-<i>.sock``. A handler
wrapper makes the RPCs whose answer depends on the worker ask the others through those sockets:

- ``ServerReady`` / ``ModelReady``: ready only when every worker is (one that does not answer is
  not ready);
- ``ModelStatistics``: the sum over the workers (counts, durations, histograms and batch
  statistics added, ``last_inference`` the latest);
- ``RepositoryModelLoad`` / ``RepositoryModelUnload``: done on every worker; the first error of
  any worker is the answer.

A call forwarded to a sibling carries ``x-modelserve-worker-hop`` and the caller's metadata (so
the sibling applies the same tenant rules) and is answered by that worker alone. Everything else
(inference, metadata, the registry follower, grpc health) stays per worker: the workers load the
same models from the same repository and registry, so they converge on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import structlog

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_model_server import methods

log = structlog.get_logger(__name__)

HOP = "x-modelserve-worker-hop"
_QUICK_TIMEOUT_S = 5.0  # readiness and statistics from a sibling (a local unix socket)
if TYPE_CHECKING:  # generic only in grpc-stubs
    _Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    _Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def socket_path(folder: Path, index: int) -> Path:
    """Where worker ``index`` serves its unix socket."""
    return folder / f"worker-{index}.sock"


def _add(total: pb.StatisticDuration, part: pb.StatisticDuration) -> None:
    total.count += part.count
    total.ns += part.ns


def _add_histogram(total: pb.DurationHistogram, part: pb.DurationHistogram) -> None:
    if not part.counts:
        return
    if not total.counts:
        total.CopyFrom(part)
    elif list(total.bounds_ns) == list(part.bounds_ns) and len(total.counts) == len(part.counts):
        for i, count in enumerate(part.counts):
            total.counts[i] += count


_INFER_FIELDS = tuple(f.name for f in pb.InferStatistics.DESCRIPTOR.fields)
_BATCH_FIELDS = ("compute_input", "compute_infer", "compute_output")
_HISTOGRAM_FIELDS = tuple(
    f.name
    for f in pb.ModelStatistics.DESCRIPTOR.fields
    if f.message_type is not None and f.message_type.name == "DurationHistogram"
)


def merge_statistics(answers: list[pb.ModelStatisticsResponse]) -> pb.ModelStatisticsResponse:
    """One ModelStatisticsResponse with the sum of ``answers`` per (model, version), in the order
    the versions first appear."""
    out = pb.ModelStatisticsResponse()
    index: dict[tuple[str, str], pb.ModelStatistics] = {}
    for answer in answers:
        for part in answer.model_stats:
            total = index.get((part.name, part.version))
            if total is None:
                total = index[(part.name, part.version)] = out.model_stats.add()
                total.CopyFrom(part)
                continue
            total.last_inference = max(total.last_inference, part.last_inference)
            total.inference_count += part.inference_count
            total.execution_count += part.execution_count
            for name in _INFER_FIELDS:
                _add(getattr(total.inference_stats, name), getattr(part.inference_stats, name))
            for name in _HISTOGRAM_FIELDS:
                _add_histogram(getattr(total, name), getattr(part, name))
            batches = {b.batch_size: b for b in total.batch_stats}
            for b in part.batch_stats:
                tb = batches.get(b.batch_size)
                if tb is None:
                    batches[b.batch_size] = total.batch_stats.add()
                    batches[b.batch_size].CopyFrom(b)
                    continue
                for name in _BATCH_FIELDS:
                    _add(getattr(tb, name), getattr(b, name))
            ordered = sorted(total.batch_stats, key=lambda b: b.batch_size)
            copies = [pb.InferBatchStatistics.FromString(b.SerializeToString()) for b in ordered]
            del total.batch_stats[:]
            total.batch_stats.extend(copies)
    return out


def without_shared(
    answer: pb.ModelStatisticsResponse, shared: Callable[[str], bool]
) -> pb.ModelStatisticsResponse:
    """``answer`` less the models for which ``shared`` is true: a model every worker forwards to
    the same Triton has one set of statistics (Triton's), which each worker repeats; summed, it
    would count every request once per worker."""
    keep = [s for s in answer.model_stats if not shared(s.name)]
    if len(keep) == len(answer.model_stats):
        return answer
    return pb.ModelStatisticsResponse(model_stats=keep)


async def _local(inner: _Handler, request: bytes, context: _Context) -> bytes:
    deserialize = inner.request_deserializer
    handle: Any = inner.unary_unary
    result = handle(deserialize(request) if deserialize else request, context)
    if asyncio.iscoroutine(result):
        result = await result
    serialize = inner.response_serializer
    return serialize(result) if serialize else result  # type: ignore[no-any-return]


def _forwarded(context: _Context) -> bool:
    return any(key == HOP for key, _ in context.invocation_metadata() or ())


class Siblings:
    """The other workers of this server, reached over their unix sockets; :meth:`wrap` is a
    handler wrapper for ``grpc_server(..., wrappers=[...])`` (outermost, so a forwarded call goes
    through the sibling's whole chain)."""

    def __init__(self, folder: Path, index: int, count: int) -> None:
        self.index = index
        self.shared: Callable[[str], bool] | None = None
        """Models whose statistics are not this server's to sum (served through Triton, which
        every worker asks for the same figures): taken from this worker's answer only."""
        self._targets = [f"unix:{socket_path(folder, j)}" for j in range(count) if j != index]
        self._channels: list[grpc.aio.Channel] = []
        self._builders: dict[str, Callable[[str, _Handler], _Handler]] = {
            methods.SERVER_READY: self._all_ready(pb.ServerReadyResponse),
            methods.MODEL_READY: self._all_ready(pb.ModelReadyResponse),
            methods.MODEL_STATISTICS: self._statistics,
            methods.REPOSITORY_MODEL_LOAD: self._everywhere,
            methods.REPOSITORY_MODEL_UNLOAD: self._everywhere,
        }

    def _ensure_channels(self) -> list[grpc.aio.Channel]:
        if not self._channels:
            self._channels = [grpc.aio.insecure_channel(t) for t in self._targets]
        return self._channels

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        self._channels = []

    def wrap(self, method: str, inner: _Handler) -> _Handler:
        build = self._builders.get(method)
        if inner is None or build is None or not self._targets:
            return inner
        return build(method, inner)

    async def _ask(
        self, method: str, request: bytes, context: _Context, wait_s: float | None
    ) -> list[bytes | grpc.aio.AioRpcError]:
        """Every sibling's answer to ``method`` (or its error), in worker order."""
        metadata = [
            (k, v) for k, v in context.invocation_metadata() or () if not k.startswith((":", "grpc-"))
        ]
        metadata.append((HOP, str(self.index)))

        async def one(channel: grpc.aio.Channel) -> bytes | grpc.aio.AioRpcError:
            try:
                call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                reply: bytes = await call(request, metadata=metadata, timeout=wait_s)
                return reply
            except grpc.aio.AioRpcError as exc:
                return exc

        return list(await asyncio.gather(*(one(c) for c in self._ensure_channels())))

    @staticmethod
    def _timeout(context: _Context, default: float | None) -> float | None:
        remaining = context.time_remaining()
        return remaining if remaining is not None else default

    def _all_ready(self, response: Any) -> Callable[[str, _Handler], _Handler]:
        not_ready: bytes = response(ready=False).SerializeToString()

        def build(method: str, inner: _Handler) -> _Handler:
            async def ready(request: bytes, context: _Context) -> bytes:
                mine = await _local(inner, request, context)
                if _forwarded(context) or not response.FromString(mine).ready:
                    return mine
                timeout = self._timeout(context, _QUICK_TIMEOUT_S)
                for reply in await self._ask(method, request, context, timeout):
                    if isinstance(reply, grpc.aio.AioRpcError) or not response.FromString(reply).ready:
                        return not_ready
                return mine

            return grpc.unary_unary_rpc_method_handler(ready)

        return build

    def _statistics(self, method: str, inner: _Handler) -> _Handler:
        async def statistics(request: bytes, context: _Context) -> bytes:
            mine = await _local(inner, request, context)
            if _forwarded(context):
                return mine
            answers = [pb.ModelStatisticsResponse.FromString(mine)]
            for reply in await self._ask(method, request, context, self._timeout(context, _QUICK_TIMEOUT_S)):
                if isinstance(reply, grpc.aio.AioRpcError):
                    # a worker that does not have the model (yet) adds nothing; one that does not
                    # answer leaves its share out, which the log says
                    if reply.code() != grpc.StatusCode.NOT_FOUND:
                        log.warning("workers.statistics_incomplete", code=reply.code().name)
                    continue
                answer = pb.ModelStatisticsResponse.FromString(reply)
                answers.append(answer if self.shared is None else without_shared(answer, self.shared))
            return merge_statistics(answers).SerializeToString()

        return grpc.unary_unary_rpc_method_handler(statistics)

    def _everywhere(self, method: str, inner: _Handler) -> _Handler:
        async def everywhere(request: bytes, context: _Context) -> bytes:
            mine = await _local(inner, request, context)
            if _forwarded(context):
                return mine
            for reply in await self._ask(method, request, context, context.time_remaining()):
                if isinstance(reply, grpc.aio.AioRpcError):
                    await context.abort(reply.code(), f"worker of this server: {reply.details()}")
            return mine

        return grpc.unary_unary_rpc_method_handler(everywhere)
