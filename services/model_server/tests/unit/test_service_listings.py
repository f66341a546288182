"""The service layer's listings with a remote (Triton) model source beside the local manager:
ModelStatistics without a name and RepositoryIndex list local rows, then the remote ones; named
statistics never ask the remote; a remote failure is the listing's failure. Plus the routing
table on its own (aliases, numbers, splits, mirrors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from ms_test_repo import xy_config

from modelserve.inference.v2 import grpc_service_pb2 as pb
from modelserve_common.errors import InvalidArgument, Unavailable
from modelserve_model_server.backend import LoadedModel, Tensors
from modelserve_model_server.config import ModelSpec
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.routing_table import ModelVersion, Routing, RoutingTable
from modelserve_model_server.service import InferenceService


class _Model:
    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        return {"y": inputs["x"]}

    async def unload(self) -> None:
        pass


class _Backend:
    name = "python"

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        return _Model()


class FakeRemote:
    """Answers like the Triton pool; ``fail`` makes both listings fail as with no replica."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, float | None]] = []
        self.fail = False

    async def statistics(self, remaining: float | None) -> list[pb.ModelStatistics]:
        self.calls.append(("statistics", None, remaining))
        if self.fail:
            raise Unavailable("no Triton replica available")
        return [pb.ModelStatistics(name="t", version="1", inference_count=7)]

    async def repository_index(
        self, ready_only: bool, remaining: float | None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        self.calls.append(("index", ready_only, remaining))
        if self.fail:
            raise Unavailable("no Triton replica available")
        return [pb.RepositoryIndexResponse.ModelIndex(name="t", version="1", state="READY")]


@pytest.fixture
async def manager(tmp_path: Path) -> ModelManager:
    m = ModelManager(tmp_path / "repo", {"python": _Backend()}, drain_timeout_s=0.1)
    await m.start("", "")
    await m.load_version("local", 1, tmp_path / "v1", xy_config())
    return m


async def test_statistics_without_a_name_list_local_then_remote(manager: ModelManager) -> None:
    remote = FakeRemote()
    service = InferenceService(manager, remote=remote)
    answer = await service.model_statistics("", "", 2.5)
    assert [(s.name, s.version) for s in answer.model_stats] == [("local", "1"), ("t", "1")]
    assert answer.model_stats[1].inference_count == 7
    assert remote.calls == [("statistics", None, 2.5)]  # the caller's time left is passed on


async def test_named_statistics_and_bad_requests_never_ask_the_remote(manager: ModelManager) -> None:
    remote = FakeRemote()
    service = InferenceService(manager, remote=remote)
    named = await service.model_statistics("local", "")
    assert [s.name for s in named.model_stats] == ["local"]
    with pytest.raises(InvalidArgument, match="a version needs a model name"):
        await service.model_statistics("", "1")
    assert remote.calls == []


async def test_repository_index_lists_local_then_remote_rows(manager: ModelManager) -> None:
    remote = FakeRemote()
    service = InferenceService(manager, remote=remote)
    answer = await service.repository_index(True, None)
    assert [(m.name, m.state) for m in answer.models] == [("local", "READY"), ("t", "READY")]
    assert remote.calls == [("index", True, None)]
    alone = await InferenceService(manager).repository_index(False)
    assert [m.name for m in alone.models] == ["local"]


async def test_a_failing_remote_fails_the_listing(manager: ModelManager) -> None:
    remote = FakeRemote()
    remote.fail = True
    service = InferenceService(manager, remote=remote)
    with pytest.raises(Unavailable):
        await service.model_statistics("", "")
    with pytest.raises(Unavailable):
        await service.repository_index(False)


async def test_routing_table_numbers_win_over_aliases_and_mirrors_follow_loaded(
    manager: ModelManager, tmp_path: Path
) -> None:
    await manager.load_version("local", 2, tmp_path / "v2", xy_config())
    v1, v2 = manager.loaded_versions("local")[1], manager.loaded_versions("local")[2]
    table = RoutingTable()
    table.set_routing("m", Routing(aliases={"2": 1, "prod": 1}, mirrors=(2, 9)))
    loaded: dict[str, dict[int, ModelVersion]] = {"m": {1: v1, 2: v2}, "empty": {}}
    table.rebuild(loaded)
    assert table.resolve("m", "2") is v2  # the number, not the alias "2"
    assert table.resolve("m", "prod") is v1
    assert table.resolve("m", "") is v2  # highest version
    assert table.mirrors == {"m": (v2,)}  # 9 is not loaded
    assert table.resolve("empty", "") is None and not table.serves("empty")
    table.set_routing("m", Routing(weights={1: 1, 2: 1}))
    assert table.resolve("m", "") is v2  # recorded, not applied before the next rebuild
    table.rebuild(loaded)
    picked = {id(table.resolve("m", "")) for _ in range(200)}  # 1/2**199 to see only one
    assert table.serves("m") and picked == {id(v1), id(v2)}
    table.rebuild({})
    assert table.empty and table.resolve("m", "1") is None
