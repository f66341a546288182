"""The routing table: which loaded :class:`ModelVersion` answers a (model, version) request.

Built by the model manager (manager.py) from what is loaded, each time that changes, so resolving
a request is one dict lookup: ``(name, version)`` -> version, ``(name, "")`` -> the highest version
(or the registry's single weighted version), ``(name, alias)`` -> the aliased version. A model
whose versionless requests are split by weight resolves through a :class:`_Split` instead; its
mirror versions (shadow targets) are in :attr:`RoutingTable.mirrors`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelserve_model_server.backend import LoadedModel
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Codec
from modelserve_model_server.config import ModelSpec
from modelserve_model_server.stats import ModelStats


@dataclass
class ModelVersion:
    """One loaded, servable model version."""

    name: str
    version: int
    version_str: str
    spec: ModelSpec
    model: LoadedModel
    stats: ModelStats
    codec: Codec
    scheduler: Scheduler


@dataclass(frozen=True)
class Routing:
    """How a model's requests are routed beyond plain version numbers (set by the registry
    follower): versionless requests are split by ``weights`` (version -> weight, among the loaded
    versions; none loaded or empty = the highest version) and ``aliases`` name versions."""

    weights: Mapping[int, int] = field(default_factory=dict)
    aliases: Mapping[str, int] = field(default_factory=dict)
    mirrors: tuple[int, ...] = ()
    """Versions that get a fire-and-forget copy of every versionless request (answers dropped)."""


class _Split:
    """A weighted random choice among loaded versions (versionless requests of a split model)."""

    __slots__ = ("_cumulative", "_total", "_versions")

    def __init__(self, weighted: list[tuple[ModelVersion, int]]) -> None:
        self._versions = [mv for mv, _ in weighted]
        self._cumulative: list[int] = []
        total = 0
        for _, w in weighted:
            total += w
            self._cumulative.append(total)
        self._total = total

    def pick(self) -> ModelVersion:
        return self._versions[bisect.bisect_right(self._cumulative, random.random() * self._total)]


class RoutingTable:
    """(model, version) -> the loaded version that answers; rebuilt from the loaded versions."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], ModelVersion] = {}
        self._splits: dict[str, _Split] = {}
        self._routing: dict[str, Routing] = {}
        self.mirrors: dict[str, tuple[ModelVersion, ...]] = {}
        """Per model, the loaded mirror versions (read by the service for versionless requests)."""

    def resolve(self, name: str, version: str) -> ModelVersion | None:
        """The version that answers ``(name, version)`` ("" = versionless), or None."""
        found = self._routes.get((name, version))
        if found is not None or version:
            return found
        split = self._splits.get(name)
        return split.pick() if split is not None else None

    def serves(self, name: str) -> bool:
        """Versionless requests of ``name`` have a version to go to."""
        return (name, "") in self._routes or name in self._splits

    @property
    def empty(self) -> bool:
        """No model has a version to go to."""
        return not (self._routes or self._splits)

    def routing(self, name: str) -> Routing | None:
        """The registry's weights, aliases and mirrors of ``name`` (None: plain routing)."""
        return self._routing.get(name)

    def set_routing(self, name: str, routing: Routing | None) -> None:
        """Records ``routing`` of ``name``; takes effect at the next :meth:`rebuild`."""
        if routing is None:
            self._routing.pop(name, None)
        else:
            self._routing[name] = routing

    def rebuild(self, loaded: Mapping[str, Mapping[int, ModelVersion]]) -> None:
        """Recomputes every route from ``loaded`` (model -> version -> loaded version)."""
        routes: dict[tuple[str, str], ModelVersion] = {}
        splits: dict[str, _Split] = {}
        mirrors: dict[str, tuple[ModelVersion, ...]] = {}
        for name, versions in loaded.items():
            if not versions:
                continue
            weighted = self._add_model(routes, mirrors, name, versions)
            if len(weighted) > 1:
                splits[name] = _Split(weighted)
            elif weighted:
                routes[(name, "")] = weighted[0][0]
            else:
                routes[(name, "")] = versions[max(versions)]
        self._routes = routes
        self._splits = splits
        self.mirrors = mirrors

    def _add_model(
        self,
        routes: dict[tuple[str, str], ModelVersion],
        mirrors: dict[str, tuple[ModelVersion, ...]],
        name: str,
        versions: Mapping[int, ModelVersion],
    ) -> list[tuple[ModelVersion, int]]:
        """Adds the alias and numbered routes of ``name``; returns its weighted versions."""
        routing = self._routing.get(name)
        weighted: list[tuple[ModelVersion, int]] = []
        if routing is not None:
            for alias, v in routing.aliases.items():  # numbers below win over an alias "2"
                if v in versions:
                    routes[(name, alias)] = versions[v]
            weighted = [
                (versions[v], w) for v, w in sorted(routing.weights.items()) if w > 0 and v in versions
            ]
            mirrored = tuple(versions[v] for v in routing.mirrors if v in versions)
            if mirrored:
                mirrors[name] = mirrored
        for v, mv in versions.items():
            routes[(name, str(v))] = mv
        return weighted
