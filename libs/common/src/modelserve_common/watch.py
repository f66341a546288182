"""Following the registry's ``Watch`` stream: the one loop the gateway cache and the model server
follower share.

List, then watch: :class:`WatchFollower` asks its ``relist`` callback for a fresh picture (the
callback returns the registry revision that picture reflects), then opens ``Watch`` after that
revision and hands every change to ``apply`` in commit order, remembering a change's revision only
once it is applied. A broken stream is re-opened after the last revision applied, so no change is
lost across registry restarts or network cuts. ``OUT_OF_RANGE`` (the revision to resume from was
compacted away) drops the revision and lists again. A stream that ends after delivering changes
(its deadline, ``watch_timeout_s``) is re-opened at once; any other end waits a backoff first:
``backoff_min_s`` doubling up to ``backoff_max_s``, each wait drawn between half and one and a half
times the step (jitter, so many followers do not reconnect in step), reset once a stream delivers.
A second ``OUT_OF_RANGE`` in a row without anything applied in between backs off too, so a registry
that keeps answering it is not asked in a tight loop.

Every reconnect is logged (``registry.watch_lost`` / ``registry.resync``) and counted in
``modelserve_registry_watch_reconnects_total{follower, reason}``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from prometheus_client import Counter

from modelserve.registry.v1 import registry_service_pb2 as registry_pb

log = structlog.get_logger(__name__)

WATCH_RECONNECTS = Counter(
    "modelserve_registry_watch_reconnects_total",
    "Times a registry Watch follower re-opened its stream (reason: lost, ended, resync, error).",
    ["follower", "reason"],
)

WatchCall = Callable[..., Any]
"""Opens the stream: ``watch(registry_pb.WatchRequest(...), timeout=seconds)`` returning an async
iterable of ``registry_pb.WatchResponse`` with ``cancel()`` (a stub's ``Watch``)."""


class Backoff:
    """Exponential backoff with jitter: ``next()`` is the wait before the next attempt. The step
    starts at ``min_s`` and doubles up to ``max_s`` (taken as ``min_s`` when smaller)."""

    def __init__(self, min_s: float, max_s: float, rand: Callable[[], float] = random.random) -> None:
        if min_s <= 0 or max_s <= 0:
            raise ValueError(f"backoff needs min_s > 0 and max_s > 0, got min_s={min_s}, max_s={max_s}")
        self.min_s = min_s
        self.max_s = max(max_s, min_s)  # a cap below the first step: every step is the first
        self._rand = rand
        self._step = min_s

    def reset(self) -> None:
        self._step = self.min_s

    def next(self) -> float:
        """The wait for this attempt (step * [0.5, 1.5)); the step doubles up to ``max_s``."""
        wait = self._step * (0.5 + self._rand())
        self._step = min(self._step * 2, self.max_s)
        return wait


class WatchFollower:
    """Lists, then follows the registry's Watch stream until :meth:`stop`.

    ``relist()`` rebuilds the caller's picture and returns the revision it reflects (``-1``: follow
    from the registry's current head). ``apply(change)`` applies one change. ``on_open()`` runs
    each time a stream is opened, ``on_lost(exc)`` each time one breaks (``exc`` None when it just
    ended). An exception from a callback is treated as a broken stream: logged, backed off, and
    the follower goes on."""

    def __init__(
        self,
        watch: WatchCall,
        *,
        name: str,
        relist: Callable[[], Awaitable[int]],
        apply: Callable[[registry_pb.WatchResponse], Awaitable[None]],
        on_open: Callable[[], None] | None = None,
        on_lost: Callable[[BaseException | None], None] | None = None,
        watch_timeout_s: float = 3600.0,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 10.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if watch_timeout_s <= 0:
            raise ValueError(f"watch_timeout_s must be > 0, got {watch_timeout_s}")
        self._watch = watch
        self.name = name
        self._relist = relist
        self._apply = apply
        self._on_open = on_open
        self._on_lost = on_lost
        self._watch_timeout_s = watch_timeout_s
        self.backoff = Backoff(backoff_min_s, backoff_max_s, rand)
        self._revision: int | None = None  # last revision applied; None = list first
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._reconnects = {r: WATCH_RECONNECTS.labels(name, r) for r in ("lost", "ended", "resync", "error")}

    @property
    def revision(self) -> int | None:
        """The last revision applied (None before the first listing or after OUT_OF_RANGE)."""
        return self._revision

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"{self.name}-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def wait_for_revision(self, revision: int, timeout_s: float = 10.0) -> None:
        """Waits until every change up to ``revision`` is applied (tests, tools)."""

        async def reached() -> None:
            while self._revision is None or self._revision < revision:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), timeout_s)

    async def run(self) -> None:
        """The loop (what :meth:`start` runs as a task)."""
        resynced = False  # the last round ended in OUT_OF_RANGE with nothing applied since
        while True:
            reason = "ended"
            exc: BaseException | None = None
            try:
                if self._revision is None:
                    self._set_revision(await self._relist())
                if await self._follow():
                    self.backoff.reset()
                    resynced = False
                    self._reconnects["ended"].inc()
                    continue  # the stream ended after working (its deadline): resume at once
            except grpc.aio.AioRpcError as err:
                if err.code() is grpc.StatusCode.OUT_OF_RANGE:
                    log.warning("registry.resync", follower=self.name, after_revision=self._revision)
                    self._revision = None
                    self._reconnects["resync"].inc()
                    if not resynced:
                        resynced = True
                        continue
                    reason = "resync"
                else:
                    reason, exc = "lost", err
            except Exception as err:  # a bug must not stop following: log, back off, go on
                reason, exc = "error", err
            wait = self.backoff.next()
            self._lost(reason, exc, wait)
            await asyncio.sleep(wait)

    def _lost(self, reason: str, exc: BaseException | None, wait: float) -> None:
        if reason != "resync":
            self._reconnects[reason].inc()
        fields: dict[str, Any] = {
            "follower": self.name,
            "revision": self._revision,
            "retry_in_s": round(wait, 2),
        }
        if isinstance(exc, grpc.aio.AioRpcError):
            log.warning("registry.watch_lost", code=exc.code().name, reason=exc.details(), **fields)
        elif exc is not None:
            log.error("registry.watch_failed", exc_info=exc, **fields)
        else:
            log.warning("registry.watch_ended", **fields)
        if self._on_lost is not None:
            self._on_lost(exc)

    async def _follow(self) -> bool:
        """Applies the changes after the current revision until the stream ends; True when it
        delivered anything (the connection works). DEADLINE_EXCEEDED is the stream's normal end."""
        assert self._revision is not None
        call = self._watch(
            registry_pb.WatchRequest(after_revision=self._revision), timeout=self._watch_timeout_s
        )
        if self._on_open is not None:
            self._on_open()
        log.info("registry.watch_started", follower=self.name, after_revision=self._revision)
        progressed = False
        try:
            async for change in call:
                progressed = True
                await self._apply(change)
                self._set_revision(int(change.revision))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return progressed
            raise
        finally:
            call.cancel()
        return progressed

    def _set_revision(self, revision: int) -> None:
        if self._revision is None or revision > self._revision:
            self._revision = revision
        self._changed.set()


__all__ = ["WATCH_RECONNECTS", "Backoff", "WatchCall", "WatchFollower"]
