"""The follower's stream handling against an in-memory fake of the registry stub: OUT_OF_RANGE
lists again, a broken stream resumes from the last revision applied, never earlier or later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve_model_server.artifacts import ArtifactStore
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.registry_follower import RegistryFollower


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class FakeCall:
    def __init__(self, changes: list[reg_pb.WatchResponse], error: grpc.aio.AioRpcError | None) -> None:
        self._changes = changes
        self._error = error

    def __aiter__(self) -> AsyncIterator[reg_pb.WatchResponse]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[reg_pb.WatchResponse]:
        for change in self._changes:
            yield change
        if self._error is not None:
            raise self._error
        await asyncio.Event().wait()  # then stays open

    def cancel(self) -> bool:
        return True


class FakeRegistry:
    """ListDeployments answers revision 10, then 20; Watch follows a script of streams."""

    def __init__(self, script: list[FakeCall]) -> None:
        self.lists = 0
        self.watched_from: list[int] = []
        self._script = script

    async def ListDeployments(self, request: Any, **kw: Any) -> reg_pb.ListDeploymentsResponse:
        self.lists += 1
        return reg_pb.ListDeploymentsResponse(revision=10 * self.lists)

    async def ListAliases(self, request: Any, **kw: Any) -> reg_pb.ListAliasesResponse:
        return reg_pb.ListAliasesResponse()

    def Watch(self, request: reg_pb.WatchRequest, timeout: float | None = None) -> FakeCall:
        self.watched_from.append(request.after_revision)
        return self._script.pop(0) if self._script else FakeCall([], None)


async def test_follower_relists_on_out_of_range_and_resumes_from_last_revision(tmp_path: Path) -> None:
    progress = [reg_pb.WatchResponse(revision=r) for r in (21, 22, 25)]
    fake = FakeRegistry(
        [
            FakeCall([], _error(grpc.StatusCode.OUT_OF_RANGE, "compacted")),
            FakeCall(progress, _error(grpc.StatusCode.UNAVAILABLE, "registry restarting")),
            FakeCall([], _error(grpc.StatusCode.UNAVAILABLE, "still down")),
        ]
    )
    manager = ModelManager(tmp_path / "repo", {})
    follower = RegistryFollower(
        manager,
        fake,
        ArtifactStore(tmp_path / "staged", [tmp_path]),
        backoff_min_s=0.01,
        backoff_max_s=0.02,  # type: ignore[arg-type]
    )
    await follower.prepare()
    await manager.start("", "")
    assert not manager.ready  # held until the first listing
    follower.start()
    try:
        for _ in range(200):
            if len(fake.watched_from) >= 4:
                break
            await asyncio.sleep(0.01)
        # listed at 10, OUT_OF_RANGE -> listed again at 20, then resumed at 25 twice (no re-list)
        assert fake.lists == 2
        assert fake.watched_from[:4] == [10, 20, 25, 25]
        assert follower.revision == 25 and follower.synced and manager.ready
    finally:
        await follower.close()
