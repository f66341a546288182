"""The Triton replica pool: with its replicas (triton_replica.py), the only code that talks to
NVIDIA Triton.

Every replica named in ``triton_url`` gets ``triton_channels_per_endpoint`` HTTP/2 connections;
calls go to the replica with the fewest outstanding requests; a replica whose health probe fails,
or that answers UNAVAILABLE and then fails a probe, is ejected (circuit breaker, with exponential
backoff) and probed back in. With no replica left a call fails UNAVAILABLE at once, never hangs.
Deadlines are the incoming call's remaining time, clamped; a cancelled client call cancels the
Triton call (grpc.aio cancels an awaited call when its task is cancelled). Requests and replies
travel as bytes (bytes-in/bytes-out multicallables): ``tritonclient.grpc`` is never imported (its
protos clash with ours in protobuf's default pool).

Every model in Triton's repository index is served under its own name (unless ``triton_models``
narrows it); a local model of the same name wins. Which RPC goes where is the router's business
(triton.py).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
import structlog

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.context import REQUEST_ID_HEADER, request_id_var
from modelserve_common.errors import DeadlineExceeded, Unavailable
from modelserve_common.tracing import current_carrier
from modelserve_model_server.methods import MODEL_STATISTICS, REPOSITORY_INDEX, SERVER_READY
from modelserve_model_server.metrics import (
    TRITON_EJECTIONS,
    TRITON_REPLICAS_AVAILABLE,
    TRITON_REQUEST_SECONDS,
    TRITON_REQUESTS,
)
from modelserve_model_server.settings import ModelServerSettings
from modelserve_model_server.triton_replica import Replica, connect, triton_error

log = structlog.get_logger(__name__)

_perf = time.perf_counter
_REQUESTS_OK = TRITON_REQUESTS.labels("OK")
_SERVER_READY_TRUE = pb.ServerReadyResponse(ready=True).SerializeToString()
_ALL_STATISTICS = pb.ModelStatisticsRequest().SerializeToString()


ReadinessCallback = Callable[[bool], Awaitable[None]]


class TritonPool:
    """The Triton replicas: balancing, ejection, probes and the repository index; forwards the
    bytes of KServe v2 calls for Triton-served models to them."""

    def __init__(
        self,
        settings: ModelServerSettings,
        *,
        local_models: Callable[[], Collection[str]] = frozenset,
        on_readiness: ReadinessCallback | None = None,
    ) -> None:
        targets = [t.strip() for t in settings.triton_url.split(",") if t.strip()]
        if not targets:
            raise ValueError("triton_url names no endpoint")
        self._settings = settings
        self._local_models = local_models
        self.on_readiness = on_readiness
        self._configured = frozenset(m.strip() for m in settings.triton_models.split(",") if m.strip())
        self.replicas: list[Replica] = [connect(target, settings) for target in targets]
        self._names: frozenset[str] = frozenset()
        self._shadowed_logged: set[str] = set()
        self._ready = False
        self._rotate = itertools.count()
        self._monitor: asyncio.Task[None] | None = None
        self._next_index = 0.0
        self.ejections = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        """Final status of forwarded unary calls and streams by code name (CANCELLED = by our caller)."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Probes every replica once, reads the index, then keeps probing in the background."""
        await self._tick()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="triton-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        for replica in self.replicas:
            for channel in replica.channels:
                await channel.close(None)

    @property
    def ready(self) -> bool:
        """A replica is ready and so is every model the settings require."""
        return self._ready

    def serves(self, name: str) -> bool:
        """Whether ``name`` is served through Triton (a local model of the same name wins)."""
        if self._configured:
            if name not in self._configured:
                return False
        elif name not in self._names:
            return False
        return name not in self._local_models()

    def index_names(self) -> frozenset[str]:
        """Models in Triton's repository index (every replica's, last refresh)."""
        return self._names | self._configured

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.triton_probe_interval_s)
            try:
                await self._tick()
            except Exception:  # never let the monitor die
                log.exception("triton.monitor_failed")

    async def _tick(self) -> None:
        await asyncio.gather(*(self._probe(r) for r in self.replicas))
        if time.monotonic() >= self._next_index:
            await self.refresh_index()
        await self._update_readiness()

    async def _probe(self, replica: Replica) -> None:
        ok = await self._check(replica)
        now = time.monotonic()
        if ok:
            replica.ready = True
            if replica.ejected and now >= replica.ejected_until:
                replica.ejected = False
                replica.failures = 0
                log.info("triton.replica_readmitted", replica=replica.target)
        elif not replica.ejected or now >= replica.ejected_until:
            self._eject(replica, "health probe failed")

    async def _check(self, replica: Replica) -> bool:
        """Whether ``replica`` answers ServerReady (reachable: not to be ejected); its answer is
        kept in ``replica.ready``. Concurrent checks of one replica share one probe."""
        if replica._probe is None or replica._probe.done():
            replica._probe = asyncio.create_task(self._server_ready(replica))
        return await asyncio.shield(replica._probe)

    async def _server_ready(self, replica: Replica) -> bool:
        try:
            reply = await replica.unary(SERVER_READY)(b"", timeout=self._settings.triton_probe_timeout_s)
        except grpc.aio.AioRpcError:
            replica.ready = False
            return False
        # A reachable replica that is not ready (with Triton's strict readiness, one unloaded
        # model makes the whole server "not ready") keeps serving its loaded models: ejecting it
        # would make every Triton model UNAVAILABLE because of one.
        replica.ready = reply == _SERVER_READY_TRUE
        return True

    def _eject(self, replica: Replica, why: str) -> None:
        replica.failures += 1
        replica.ready = False
        s = self._settings
        period = min(
            s.triton_eject_s * 2 ** (replica.failures - 1), max(s.triton_eject_max_s, s.triton_eject_s)
        )
        replica.ejected_until = time.monotonic() + period
        if not replica.ejected:
            self.ejections += 1
            TRITON_EJECTIONS.inc()
            log.warning("triton.replica_ejected", replica=replica.target, reason=why, eject_s=period)
        replica.ejected = True

    async def refresh_index(self) -> None:
        """Reads every ready replica's RepositoryIndex; the union is what Triton serves."""
        self._next_index = time.monotonic() + self._settings.triton_index_refresh_s
        request = pb.RepositoryIndexRequest().SerializeToString()
        names: set[str] = set()
        answered = False
        for replica in self.replicas:
            if replica.ejected:
                continue
            try:
                raw = await replica.unary(REPOSITORY_INDEX)(
                    request, timeout=self._settings.triton_probe_timeout_s
                )
            except grpc.aio.AioRpcError:
                continue
            answered = True
            index = pb.RepositoryIndexResponse.FromString(raw)
            replica.models = {m.name: m.state for m in index.models}
            names.update(replica.models)
        if not answered:
            return  # keep what we knew: Triton's models then fail UNAVAILABLE, not NOT_FOUND
        local = set(self._local_models())
        for name in sorted(names & local - self._shadowed_logged):
            log.warning("triton.model_shadowed_by_local", model=name)
            self._shadowed_logged.add(name)
        self._names = frozenset(names)

    async def _update_readiness(self) -> None:
        TRITON_REPLICAS_AVAILABLE.set(sum(1 for r in self.replicas if not r.ejected))
        strict = self._settings.strict_readiness
        live = [r for r in self.replicas if not r.ejected and (r.ready or not strict)]
        ready = bool(live) and all(any(r.models.get(m) == "READY" for r in live) for m in self._configured)
        if ready != self._ready:
            self._ready = ready
            log.info("triton.readiness_changed", ready=ready)
            if self.on_readiness is not None:
                await self.on_readiness(ready)

    # ----------------------------------------------------------------- calls

    def _timeout(self, context: grpc.aio.ServicerContext[Any, Any], default: float) -> float:
        return self._timeout_within(context.time_remaining(), default)

    def _timeout_within(self, remaining: float | None, default: float) -> float:
        if remaining is None or remaining > 1e7:  # no deadline on the incoming call
            return min(default, self._settings.triton_max_timeout_s)
        remaining -= self._settings.triton_deadline_margin_s
        if remaining <= 0:
            raise DeadlineExceeded("deadline exceeded before the call was forwarded to Triton")
        return min(remaining, self._settings.triton_max_timeout_s)

    def _pick(self, exclude: Replica | None = None) -> Replica:
        n = len(self.replicas)
        if n == 1 and not (r := self.replicas[0]).ejected and r is not exclude:
            return r
        best: Replica | None = None
        start = next(self._rotate) % n
        for i in range(n):
            r = self.replicas[(start + i) % n]
            if r.ejected or r is exclude:
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        if best is None:
            raise Unavailable(
                f"no Triton replica available ({n} configured, all ejected after failing health checks)"
            )
        return best

    @staticmethod
    def _metadata() -> grpc.aio.Metadata | None:
        """The request id and, tracing on, the W3C ``traceparent``/``tracestate`` of the current
        span: the keys Triton's OpenTelemetry trace mode reads from gRPC metadata. A
        ``grpc.aio.Metadata`` (compares equal to the tuple of its pairs): a tuple would cost grpc.aio
        an ``isinstance(..., typing.Sequence)`` check and a conversion per call."""
        rid = request_id_var.get()
        carrier = current_carrier()
        if carrier:
            pairs = ((REQUEST_ID_HEADER, rid), *carrier.items()) if rid else tuple(carrier.items())
            return grpc.aio.Metadata(*pairs)
        return grpc.aio.Metadata((REQUEST_ID_HEADER, rid)) if rid else None

    async def _down(self, replica: Replica, exc: grpc.aio.AioRpcError) -> bool:
        """After UNAVAILABLE: is the replica itself down (then eject it) or was it Triton's answer?"""
        if await self._check(replica):
            return False
        self._eject(replica, exc.details() or "UNAVAILABLE")
        return True

    async def call(self, method: str, payload: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Forwards one unary call's bytes within the incoming call's deadline."""
        return await self.call_within(method, payload, context.time_remaining())

    async def call_within(self, method: str, payload: bytes, remaining: float | None) -> bytes:
        """Sends one unary call's bytes (``remaining``: the caller's time left, None = no deadline);
        on a replica found down, retries once on another. The hot path: one await of the
        bytes-in/bytes-out multicallable; the payload is passed on as received (never copied)."""
        first_timeout = timeout = self._timeout_within(remaining, self._settings.triton_timeout_s)
        metadata = self._metadata()
        failed: Replica | None = None
        started = _perf()
        try:
            while True:
                replica = self._pick(failed)
                replica.outstanding += 1
                try:
                    reply: bytes = await replica.unary(method)(payload, timeout=timeout, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    self._count(code.name)
                    if code is not grpc.StatusCode.UNAVAILABLE or not await self._down(replica, exc):
                        raise triton_error(exc) from None
                    if failed is not None:
                        raise Unavailable(f"Triton replicas unavailable: {exc.details()}") from None
                    failed = replica
                    timeout = first_timeout - (_perf() - started)
                    if timeout <= 0:
                        raise DeadlineExceeded("deadline exceeded while Triton was unavailable") from None
                    continue
                except asyncio.CancelledError:
                    self._count("CANCELLED")  # the client went away; grpc.aio cancelled the call
                    raise
                finally:
                    replica.outstanding -= 1
                self.outcomes["OK"] += 1
                _REQUESTS_OK.inc()
                return reply
        finally:
            TRITON_REQUEST_SECONDS.observe(_perf() - started)

    def _count(self, code: str) -> None:
        self.outcomes[code] += 1
        TRITON_REQUESTS.labels(code).inc()

    async def statistics(self, remaining: float | None) -> list[pb.ModelStatistics]:
        """ModelStatistics of every model served through Triton (one replica's answer)."""
        raw = await self.call_within(MODEL_STATISTICS, _ALL_STATISTICS, remaining)
        answer = pb.ModelStatisticsResponse.FromString(raw)
        return [s for s in answer.model_stats if self.serves(s.name)]

    async def repository_index(
        self, ready_only: bool, remaining: float | None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        """RepositoryIndex rows of the models served through Triton (one replica's answer)."""
        request = pb.RepositoryIndexRequest(ready=ready_only).SerializeToString()
        answer = pb.RepositoryIndexResponse.FromString(
            await self.call_within(REPOSITORY_INDEX, request, remaining)
        )
        return [m for m in answer.models if self.serves(m.name)]

    async def stream(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """Forwards a bidirectional stream of bytes to one replica."""
        timeout = self._timeout(context, self._settings.triton_max_timeout_s)
        replica = self._pick()
        replica.outstanding += 1
        call = replica.stream(method)(requests, timeout=timeout, metadata=self._metadata())
        try:
            async for item in call:
                yield item
            self._count("OK")
        except grpc.aio.AioRpcError as exc:
            self._count(exc.code().name)
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                await self._down(replica, exc)
            raise triton_error(exc) from None
        finally:
            replica.outstanding -= 1
            if not call.done():
                self._count("CANCELLED")
                call.cancel()

    async def broadcast(
        self, method: str, payload: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """Sends a lifecycle call (load/unload) to every available replica; fails if any fails."""
        targets = [r for r in self.replicas if not r.ejected]
        if not targets:
            self._pick()  # raises Unavailable
        timeout = self._timeout(context, self._settings.triton_max_timeout_s)
        results = await asyncio.gather(
            *(r.unary(method)(payload, timeout=timeout, metadata=self._metadata()) for r in targets),
            return_exceptions=True,
        )
        await self.refresh_index()
        await self._update_readiness()
        for result in results:
            if isinstance(result, grpc.aio.AioRpcError):
                raise triton_error(result)
            if isinstance(result, BaseException):
                raise result
        reply: bytes = results[0]  # type: ignore[assignment]
        return reply


def triton_pool(
    settings: ModelServerSettings, *, local_models: Callable[[], Collection[str]] = frozenset
) -> TritonPool | None:
    """The (not yet started) pool, or None when ``triton_url`` is empty (Triton path off)."""
    if not settings.triton_url.strip():
        return None
    return TritonPool(settings, local_models=local_models)
