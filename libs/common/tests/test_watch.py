"""modelserve_common.watch: the registry Watch follower against a real grpc.aio server whose Watch
answers from a script (changes, broken streams, OUT_OF_RANGE), and its jittered backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from prometheus_client import REGISTRY

from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.watch import Backoff, WatchFollower

Step = int | grpc.StatusCode  # a change with that revision, or end the stream with that code


class ScriptedRegistry(registry_grpc.RegistryServiceServicer):
    """Watch plays one script per call (then holds the stream open); every request is recorded.
    A call whose after_revision is below ``compacted`` answers OUT_OF_RANGE."""

    def __init__(self, scripts: list[list[Step]], compacted: int = -1) -> None:
        self.scripts = scripts
        self.compacted = compacted
        self.requests: list[int] = []

    async def Watch(  # noqa: N802
        self, request: registry_pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb.WatchResponse]:
        self.requests.append(request.after_revision)
        if 0 <= request.after_revision < self.compacted:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "revision compacted")
        script = self.scripts.pop(0) if self.scripts else []
        for step in script:
            if isinstance(step, grpc.StatusCode):
                await context.abort(step, "scripted end")
            yield registry_pb.WatchResponse(
                revision=step, type=registry_pb.CHANGE_TYPE_UPDATED, model=registry_pb.Model(name=f"m{step}")
            )
        await asyncio.Event().wait()  # held open until the client goes


@pytest.fixture
async def registry() -> AsyncIterator[
    Callable[..., tuple[ScriptedRegistry, registry_grpc.RegistryServiceStub]]
]:
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(
        servicer: ScriptedRegistry,
    ) -> registry_grpc.RegistryServiceStub:
        server = grpc.aio.server()
        registry_grpc.add_RegistryServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return registry_grpc.RegistryServiceStub(channel)

    yield start  # type: ignore[misc]
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(0)


class Recorder:
    """The follower's callbacks, recording what they were given."""

    def __init__(self, listings: list[int], fail_apply_at: int | None = None) -> None:
        self.listings = listings
        self.relists = 0
        self.applied: list[int] = []
        self.opened = 0
        self.lost: list[BaseException | None] = []
        self.fail_apply_at = fail_apply_at
        self.rand_calls = 0
        self.relisted = asyncio.Event()

    async def relist(self) -> int:
        self.relists += 1
        self.relisted.set()
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]

    async def apply(self, change: registry_pb.WatchResponse) -> None:
        if change.revision == self.fail_apply_at:
            self.fail_apply_at = None
            raise RuntimeError("apply failed once")
        self.applied.append(change.revision)

    def on_open(self) -> None:
        self.opened += 1

    def on_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    def rand(self) -> float:
        self.rand_calls += 1
        return 0.5


def follower(stub: registry_grpc.RegistryServiceStub, rec: Recorder, name: str, **kw: float) -> WatchFollower:
    return WatchFollower(
        stub.Watch,
        name=name,
        relist=rec.relist,
        apply=rec.apply,
        on_open=rec.on_open,
        on_lost=rec.on_lost,
        backoff_min_s=kw.pop("backoff_min_s", 0.01),
        backoff_max_s=kw.pop("backoff_max_s", 0.02),
        rand=rec.rand,
        **kw,
    )


def reconnects(name: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "modelserve_registry_watch_reconnects_total", {"follower": name, "reason": reason}
    )
    return value or 0.0


async def test_lists_then_resumes_after_the_last_applied_revision(registry) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRegistry([[11, 12, 13, grpc.StatusCode.UNAVAILABLE], [14]])
    rec = Recorder([10])
    f = follower(await registry(servicer), rec, "t_resume")
    f.start()
    try:
        await f.wait_for_revision(14)
    finally:
        await f.stop()
    assert servicer.requests == [10, 13]  # listed at 10; re-opened after 13, not from the start
    assert rec.applied == [11, 12, 13, 14]
    assert rec.relists == 1 and rec.opened == 2
    assert len(rec.lost) == 1 and isinstance(rec.lost[0], grpc.aio.AioRpcError)
    assert rec.lost[0].code() is grpc.StatusCode.UNAVAILABLE
    assert rec.rand_calls == 1  # one backoff wait, jittered
    assert reconnects("t_resume", "lost") == 1.0
    assert f.revision == 14


async def test_out_of_range_lists_again_and_follows_from_the_new_listing(registry) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRegistry([[21]], compacted=20)
    rec = Recorder([3, 20])
    f = follower(await registry(servicer), rec, "t_resync")
    f.start()
    try:
        await f.wait_for_revision(21)
    finally:
        await f.stop()
    assert servicer.requests == [3, 20]
    assert rec.relists == 2 and rec.applied == [21]
    assert rec.rand_calls == 0  # the first resync lists again at once
    assert reconnects("t_resync", "resync") == 1.0


async def test_a_registry_that_keeps_answering_out_of_range_is_asked_with_backoff(registry) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRegistry([], compacted=10**9)
    rec = Recorder([1])
    f = follower(await registry(servicer), rec, "t_resync_loop")
    f.start()
    try:
        async with asyncio.timeout(10):
            while rec.relists < 4:
                rec.relisted.clear()
                await rec.relisted.wait()
    finally:
        await f.stop()
    # the first OUT_OF_RANGE relists at once; each further one in a row waits a backoff first
    assert rec.rand_calls >= rec.relists - 2 >= 2
    assert f.revision is None or f.revision == 1


async def test_a_failing_callback_backs_off_and_reapplies_from_the_last_applied_revision(registry) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRegistry([[1, 2], [2, 3]])
    rec = Recorder([0], fail_apply_at=2)
    f = follower(await registry(servicer), rec, "t_error")
    f.start()
    try:
        await f.wait_for_revision(3)
    finally:
        await f.stop()
    assert servicer.requests == [0, 1]
    assert rec.applied == [1, 2, 3]
    assert isinstance(rec.lost[0], RuntimeError)
    assert reconnects("t_error", "error") == 1.0


async def test_a_stream_that_ends_at_its_deadline_after_working_resumes_without_backoff(registry) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRegistry([[5], [6]])
    rec = Recorder([4])
    f = follower(await registry(servicer), rec, "t_deadline", watch_timeout_s=0.3)
    f.start()
    try:
        await f.wait_for_revision(6)
    finally:
        await f.stop()
    assert servicer.requests == [4, 5]
    assert rec.rand_calls == 0 and rec.lost == []
    assert reconnects("t_deadline", "ended") == 1.0


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    draws = iter([0.0, 0.5, 0.99, 0.5, 0.5, 0.5])
    b = Backoff(0.2, 0.7, rand=lambda: next(draws))
    waits = [round(b.next(), 4) for _ in range(4)]
    # steps 0.2, 0.4, 0.7 (capped), 0.7; each drawn in [0.5, 1.5) x step
    assert waits == [0.1, 0.4, round(0.7 * 1.49, 4), 0.7]
    b.reset()
    assert b.next() == pytest.approx(0.2)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_backoff_refuses_bounds_that_cannot_work(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="min_s > 0 and max_s > 0"):
        Backoff(lo, hi)


def test_backoff_cap_below_the_first_step_keeps_the_first_step() -> None:
    b = Backoff(2.0, 1.0, rand=lambda: 0.5)
    assert [b.next() for _ in range(3)] == [2.0, 2.0, 2.0]


def test_follower_refuses_a_watch_timeout_that_cannot_work() -> None:
    async def relist() -> int:
        return 0

    async def apply(change: registry_pb.WatchResponse) -> None:
        return None

    with pytest.raises(ValueError, match="watch_timeout_s"):
        WatchFollower(lambda *a, **k: None, name="bad", relist=relist, apply=apply, watch_timeout_s=0)
