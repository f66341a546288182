"""What a model server holds and how a request finds it: the loaded versions per model and the
routing table over them (the hot-path lookup), readiness (start-up, gates, required models), load
failures (per-model isolation) and RepositoryIndex. :class:`ModelManager` (manager.py) builds on it
and does the loading and unloading."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from modelserve_common.errors import InvalidArgument, ServiceError, clip
from modelserve_model_server.backend import Backend
from modelserve_model_server.codec import Limits
from modelserve_model_server.config import CONFIG_FILE, check_name
from modelserve_model_server.errors import InvalidModelConfig, ModelNotFound, ModelNotReady
from modelserve_model_server.routing_table import ModelVersion, Routing, RoutingTable

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"

CODE_BACKENDS = frozenset({"python"})
"""Backends that import and run code found in the version folder."""
REPOSITORY = "repository"
"""The failure source of local repository loads (version 0 = the whole model)."""

FAILED_MODELS = Gauge(
    "modelserve_model_server_failed_models",
    "Model versions that failed to load and serve nothing (a local repository model counts once).",
)


@dataclass
class Entry:
    name: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: str = UNAVAILABLE
    reason: str = "unloaded"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class IndexEntry:
    """One row of RepositoryIndex."""

    name: str
    version: str
    state: str
    reason: str


def is_number(version: str) -> bool:
    """ASCII digits only: "²".isdigit() is True but int("²") raises, and int() of a
    5000-digit string raises ValueError (Python's digit limit); neither may reach int()."""
    return version.isascii() and version.isdigit()


def positive_version(version: str) -> bool:
    """A positive integer version ref, judged without int() (a huge number is a version this
    server does not have: the missing-version NOT_FOUND, not an error)."""
    return is_number(version) and version.strip("0") != ""


def check_model_name(name: str) -> None:
    """A model name the repository could hold, or INVALID_ARGUMENT saying why not."""
    try:
        check_name("model", name)
    except InvalidModelConfig as exc:
        raise InvalidArgument(exc.message) from None


class ModelIndex:
    """The loaded models of one repository folder and what is known about them."""

    def __init__(
        self,
        repository: Path,
        backends: Mapping[str, Backend],
        *,
        limits: Limits | None = None,
        default_max_queue_size: int = 0,
        tracer: Any = None,
        drain_timeout_s: float = 30.0,
        strict_readiness: bool = False,
        code_roots: Iterable[Path] | None = None,
    ) -> None:
        self.repository = repository
        self._backends = dict(backends)
        self._limits = limits or Limits()
        self._default_max_queue_size = default_max_queue_size
        self._tracer = tracer
        self._drain_timeout_s = drain_timeout_s
        self._entries: dict[str, Entry] = {}
        self._table = RoutingTable()
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._starting = True
        self._required: frozenset[str] = frozenset()
        self._retiring: set[asyncio.Task[None]] = set()
        # Registry follower (registry_follower.py): readiness gates.
        self._gates: dict[str, tuple[bool, frozenset[str]]] = {}
        self._strict = strict_readiness
        self._code_roots = tuple(code_roots) if code_roots is not None else None
        # source ("repository", "registry") -> (model, version) -> reason
        self._failures: dict[str, dict[tuple[str, int], str]] = {}

    # -- resolving (hot path) -------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The ready version ``version`` ("" = highest) of model ``name``."""
        found = self._table.resolve(name, version)
        if found is not None:
            return found
        return self._explain_miss(name, version)

    @property
    def mirrors(self) -> dict[str, tuple[ModelVersion, ...]]:
        """Per model, the loaded mirror versions (read by the service for versionless requests)."""
        return self._table.mirrors

    def missing(self, name: str, version: str = "") -> ServiceError:
        """The error a request for a model this server does not know gets (invalid name or version:
        INVALID_ARGUMENT; otherwise NOT_FOUND). A model hidden from the caller gets exactly this."""
        try:
            check_name("model", name)
        except InvalidModelConfig as exc:
            return InvalidArgument(exc.message)
        if version and not positive_version(version):
            return InvalidArgument(
                f"model version {clip(version)} is not valid: expected a positive integer or empty"
            )
        return ModelNotFound(f"model {name!r} not found in the repository")

    def _explain_miss(self, name: str, version: str) -> ModelVersion:
        check_model_name(name)
        routing = self._table.routing(name)
        if version and routing is not None and not is_number(version):
            if version in routing.aliases:
                raise ModelNotFound(
                    f"alias {clip(version)} of model {name!r} points at version "
                    f"{routing.aliases[version]}, which is not loaded here"
                )
            raise ModelNotFound(
                f"model {name!r} has no alias {clip(version)}; aliases {sorted(routing.aliases)}"
            )
        if version and not positive_version(version):
            raise InvalidArgument(
                f"model version {clip(version)} is not valid: expected a positive integer or empty"
            )
        entry = self._entries.get(name)
        if entry is None or (not entry.versions and entry.state != LOADING):
            if (self.repository / name / CONFIG_FILE).is_file():
                raise ModelNotReady(f"model {name!r} is not loaded ({entry.reason if entry else 'unloaded'})")
            raise self.missing(name, version)
        if entry.state != READY or not entry.versions:
            raise ModelNotReady(f"model {name!r} is not ready ({entry.state.lower()}: {entry.reason})")
        raise ModelNotFound(
            f"model {name!r} has no version {version if len(version) <= 20 else clip(version)}; "
            f"available versions {sorted(entry.versions)}"
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every loaded version of ``name`` (NOT_FOUND/UNAVAILABLE when none)."""
        latest = self.get(name, "")
        entry = self._entries[latest.name]
        return [entry.versions[v] for v in sorted(entry.versions)]

    def all_versions(self) -> list[ModelVersion]:
        return [mv for e in self._entries.values() for _, mv in sorted(e.versions.items())]

    # -- readiness ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Default: start-up loading is over, no readiness gate holds (the registry's first sync is
        done) and every model named in ``required_models`` is ready; a model that failed to load
        does not make the server unready. ``strict_readiness``: start-up loading is over, some
        model is ready and every required model is, the gates' models (every deployed registry
        model) included. With a gate, an empty server is ready once the gate opens: it serves what
        is deployed, which may be nothing."""
        if self._starting:
            return False
        if not self._strict:
            return self.gates_open and all(self._table.serves(name) for name in self._required)
        if self._table.empty and not self._gates:
            return False
        required = set(self._required)
        for holding, names in self._gates.values():
            if holding:
                return False
            required |= names
        return all(self._table.serves(name) for name in required)

    @property
    def gates_open(self) -> bool:
        """No readiness gate holds the server back (e.g. the registry's first sync is over)."""
        return not any(holding for holding, _ in self._gates.values())

    async def set_readiness_gate(self, source: str, *, holding: bool, required: Iterable[str] = ()) -> None:
        """``source`` (the registry follower) keeps the server not ready while ``holding`` and
        makes ``required`` models count toward readiness; listeners hear of a change."""
        gate = (holding, frozenset(required))
        if self._gates.get(source) != gate:
            self._gates[source] = gate
            await self._changed()

    # -- failures (per-model isolation) -------------------------------------------------------

    def set_failures(self, source: str, failures: Mapping[tuple[str, int], str]) -> None:
        """Replaces the failed (model, version) -> reason of ``source`` (the registry follower
        reports its FAILED versions here); the gauge and RepositoryIndex follow."""
        if failures:
            self._failures[source] = dict(failures)
        else:
            self._failures.pop(source, None)
        FAILED_MODELS.set(self.failed_count)

    def _set_failure(self, name: str, reason: str | None) -> None:
        failures = dict(self._failures.get(REPOSITORY, {}))
        if reason is None:
            failures.pop((name, 0), None)
        else:
            failures[(name, 0)] = reason
        self.set_failures(REPOSITORY, failures)

    @property
    def failed_count(self) -> int:
        """Model versions that failed to load and serve nothing."""
        return sum(len(f) for f in self._failures.values())

    def failures(self) -> dict[tuple[str, int], str]:
        """Every failed (model, version) -> reason (version 0: a local model as a whole)."""
        return {k: v for f in self._failures.values() for k, v in f.items()}

    def on_change(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Calls ``listener`` after every load or unload (health follows readiness)."""
        self._listeners.append(listener)

    async def _changed(self) -> None:
        for listener in self._listeners:
            await listener()

    # -- repository -----------------------------------------------------------------------------

    def repository_models(self) -> list[str]:
        """Model folders of the repository (those with a config file)."""
        if not self.repository.is_dir():
            return []
        return sorted(p.name for p in self.repository.iterdir() if (p / CONFIG_FILE).is_file())

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        failed = self.failures()
        names = sorted(set(self.repository_models()) | set(self._entries) | {n for n, _ in failed})
        rows: list[IndexEntry] = []
        for name in names:
            entry = self._entries.get(name)
            if entry is not None and entry.versions:
                for v in sorted(entry.versions):
                    rows.append(IndexEntry(name, str(v), entry.state, entry.reason))
            elif not ready_only:
                rows.append(
                    IndexEntry(
                        name, "", entry.state if entry else UNAVAILABLE, entry.reason if entry else "unloaded"
                    )
                )
        if ready_only:
            rows = [r for r in rows if r.state == READY]
        else:
            for (name, version), reason in sorted(failed.items()):
                entry = self._entries.get(name)
                if version and (entry is None or version not in entry.versions):
                    rows.append(IndexEntry(name, str(version), UNAVAILABLE, f"failed: {reason}"))
            rows.sort(key=lambda r: (r.name, r.version))
        return rows

    def _rebuild_routes(self) -> None:
        self._table.rebuild({name: entry.versions for name, entry in self._entries.items()})

    # -- routing (the registry follower) ------------------------------------------------------

    def loaded_versions(self, name: str) -> dict[int, ModelVersion]:
        """The versions of ``name`` that serve now (empty when none)."""
        entry = self._entries.get(name)
        return dict(entry.versions) if entry is not None else {}

    def set_routing(self, name: str, routing: Routing | None) -> None:
        """Weights and aliases of ``name`` (None: plain routing, versionless = highest version)."""
        self._table.set_routing(name, routing)
        self._rebuild_routes()
