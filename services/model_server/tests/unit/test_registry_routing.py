"""The ModelManager hooks the registry follower drives: per-version load/unload, weighted
versionless routing, aliases and readiness gates, against an in-memory fake backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from ms_test_repo import xy_config

from modelserve_model_server.backend import LoadedModel, Tensors
from modelserve_model_server.config import ModelSpec
from modelserve_model_server.errors import ModelLoadFailed, ModelNotFound
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.routing_table import Routing


class FakeModel:
    def __init__(self, version: int) -> None:
        self.version = version
        self.unloaded = False

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        return {"y": inputs["x"] + self.version}

    async def unload(self) -> None:
        self.unloaded = True


class FakeBackend:
    """Loads any folder; a folder named 'bad' fails like a broken model."""

    name = "python"

    def __init__(self) -> None:
        self.loaded: list[FakeModel] = []

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        if version_dir.name == "bad":
            raise RuntimeError("the model would not load")
        model = FakeModel(version)
        self.loaded.append(model)
        return model


@pytest.fixture
async def manager(tmp_path: Path) -> ModelManager:
    m = ModelManager(tmp_path / "repo", {"python": FakeBackend()}, drain_timeout_s=0.1)
    await m.start("", "")
    return m


async def test_load_version_adds_beside_served_versions_and_failure_keeps_them(
    manager: ModelManager, tmp_path: Path
) -> None:
    await manager.load_version("m", 1, tmp_path / "v1", xy_config())
    await manager.load_version("m", 2, tmp_path / "v2", xy_config())
    assert sorted(manager.loaded_versions("m")) == [1, 2]
    with pytest.raises(ModelLoadFailed, match="the model would not load; versions \\[1, 2\\] keep serving"):
        await manager.load_version("m", 3, tmp_path / "bad", xy_config())
    assert manager.get("m").version == 2
    await manager.unload_versions("m", [2])
    assert manager.get("m").version == 1
    with pytest.raises(ModelNotFound):
        manager.get("m", "2")


async def test_weighted_split_of_versionless_requests(manager: ModelManager, tmp_path: Path) -> None:
    for v in (1, 2, 3):
        await manager.load_version("m", v, tmp_path / f"v{v}", xy_config())
    manager.set_routing("m", Routing(weights={1: 75, 2: 25, 3: 0, 9: 50}))  # 9 is not loaded
    counts = Counter(manager.get("m").version for _ in range(4000))
    assert set(counts) == {1, 2}
    assert 850 <= counts[2] <= 1150, counts  # mean 1000, sd 27
    assert manager.get("m", "3").version == 3  # explicit versions unaffected
    manager.set_routing("m", Routing(weights={2: 100}))
    assert {manager.get("m").version for _ in range(50)} == {2}
    manager.set_routing("m", None)
    assert manager.get("m").version == 3


async def test_aliases_route_and_explain_misses(manager: ModelManager, tmp_path: Path) -> None:
    await manager.load_version("m", 1, tmp_path / "v1", xy_config())
    manager.set_routing("m", Routing(aliases={"production": 1, "canary": 5}))
    assert manager.get("m", "production").version == 1
    with pytest.raises(ModelNotFound, match="alias 'canary' of model 'm' points at version 5"):
        manager.get("m", "canary")
    with pytest.raises(ModelNotFound, match="no alias 'nope'"):
        manager.get("m", "nope")
    out = await manager.get("m", "production").model.execute({"x": np.zeros(1, np.float32)}, ["y"])
    assert out["y"][0] == 1


async def test_default_readiness_is_startup_and_first_sync_only(
    manager: ModelManager, tmp_path: Path
) -> None:
    assert manager.ready  # start-up over, no gate: ready, serving nothing
    await manager.set_readiness_gate("registry", holding=True)
    assert not manager.ready  # the first registry sync is not done
    await manager.set_readiness_gate("registry", holding=False, required={"m"})
    assert manager.ready  # a deployed model that serves nothing is only that model not ready
    manager.set_failures("registry", {("m", 1): "broken"})
    assert manager.ready and manager.failed_count == 1
    manager.set_failures("registry", {})
    assert manager.failed_count == 0


async def test_readiness_gate_holds_then_requires_models(tmp_path: Path) -> None:
    manager = ModelManager(
        tmp_path / "repo", {"python": FakeBackend()}, drain_timeout_s=0.1, strict_readiness=True
    )
    await manager.start("", "")
    assert not manager.ready  # strict: nothing loaded, no gate
    await manager.set_readiness_gate("registry", holding=True)
    assert not manager.ready and not manager.gates_open
    await manager.set_readiness_gate("registry", holding=False)
    assert manager.ready  # synced, nothing deployed: ready serving nothing
    await manager.set_readiness_gate("registry", holding=False, required={"m"})
    assert not manager.ready
    await manager.load_version("m", 1, tmp_path / "v1", xy_config())
    await manager.load_version("m", 2, tmp_path / "v2", xy_config())
    manager.set_routing("m", Routing(weights={1: 50, 2: 50}))
    assert manager.ready  # a split model counts as serving
