"""The model repository and what is loaded from it.

:class:`ModelManager` resolves (name, version) to a loaded :class:`ModelVersion` (one dict lookup on
the hot path), loads and unloads models (RepositoryModelLoad/Unload, and later the registry's
deployments through the same :meth:`ModelManager.load` / :meth:`ModelManager.unload`), and says
whether the server is ready. A load that fails leaves the versions that served before serving and
records why (RepositoryIndex shows the reason).

Repository layout (Triton's): ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/…``.
Every numeric version folder is loaded; a request without a version gets the highest one.

Failure isolation: a model (or version) that fails to load is only that model not ready; the
failures are counted in the ``modelserve_model_server_failed_models`` gauge. Readiness is start-up
(and the registry's first sync) done, unless ``strict_readiness`` keeps the old all-or-nothing
rule (:attr:`ModelManager.ready`).

Code confinement: with ``code_roots`` set, a version folder (and, for a backend that runs code,
the file of code it would import) is loaded only from inside those roots; otherwise the load fails
naming the rule, before the backend imports anything.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Gauge

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.artifact_uri import check_artifact_path
from modelserve_common.errors import InvalidArgument, ServiceError, clip
from modelserve_model_server.backend import Backend, LoadedModel
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Codec, Limits
from modelserve_model_server.config import (
    CONFIG_FILE,
    ModelSpec,
    check_name,
    read_config,
    spec_from_config,
    version_dirs,
)
from modelserve_model_server.errors import InvalidModelConfig, ModelLoadFailed, ModelNotFound, ModelNotReady
from modelserve_model_server.routing_table import ModelVersion, Routing, RoutingTable
from modelserve_model_server.stats import ModelStats

log = structlog.get_logger(__name__)

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
class _Entry:
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


def _check_model_name(name: str) -> None:
    """A model name the repository could hold, or INVALID_ARGUMENT saying why not."""
    try:
        check_name("model", name)
    except InvalidModelConfig as exc:
        raise InvalidArgument(exc.message) from None


class ModelManager:
    """Loads, unloads and resolves models of one repository folder."""

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
        self._entries: dict[str, _Entry] = {}
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
        if version and not (version.isdigit() and int(version) > 0):
            return InvalidArgument(
                f"model version {clip(version)} is not valid: expected a positive integer or empty"
            )
        return ModelNotFound(f"model {name!r} not found in the repository")

    def _explain_miss(self, name: str, version: str) -> ModelVersion:
        _check_model_name(name)
        routing = self._table.routing(name)
        if version and routing is not None and not version.isdigit():
            if version in routing.aliases:
                raise ModelNotFound(
                    f"alias {clip(version)} of model {name!r} points at version "
                    f"{routing.aliases[version]}, which is not loaded here"
                )
            raise ModelNotFound(
                f"model {name!r} has no alias {clip(version)}; aliases {sorted(routing.aliases)}"
            )
        if version and not (version.isdigit() and int(version) > 0):
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

    def _check_code(self, spec: ModelSpec, version_dir: Path, *, in_repository: bool = False) -> None:
        """With ``code_roots``: the version folder, and for a code-running backend the file it
        imports, must be inside them (real paths, symlinks followed) and that file must be a
        regular file. A model of the local repository is the operator's: its symlinks are followed
        wherever they lead, but the code file must lie (as written) inside the repository
        (``default_model_filename`` cannot climb out with ``..``). Raised before the backend
        touches anything."""
        if self._code_roots is None:
            return
        try:
            code = version_dir / (spec.default_model_filename or "model.py")
            if in_repository:
                repo = Path(os.path.abspath(self.repository))
                written = Path(os.path.normpath(os.path.abspath(code)))
                if repo not in written.parents:
                    raise InvalidArgument(
                        f"{spec.default_model_filename!r} is not inside the model repository"
                    )
                real = Path(os.path.realpath(code))
            else:
                check_artifact_path(version_dir, self._code_roots)
                real = check_artifact_path(code, self._code_roots)
            if spec.backend in CODE_BACKENDS:
                try:
                    regular = stat.S_ISREG(os.stat(real).st_mode)
                except OSError:
                    regular = True  # missing: the backend says so with its own message
                if not regular:
                    raise InvalidArgument(f"{code.name!r} is not a regular file")
        except InvalidArgument as exc:
            raise InvalidModelConfig(f"model code refused: {exc.message}") from None

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

    async def start(self, load: str, required: str) -> None:
        """Loads the start-up models ("*" = all in the repository); failures are logged and kept in
        the index. The server is not ready before this returns."""
        self._required = frozenset(n.strip() for n in required.split(",") if n.strip())
        names = (
            self.repository_models()
            if load.strip() == "*"
            else [n.strip() for n in load.split(",") if n.strip()]
        )
        for name in names:
            try:
                await self.load(name, notify=False)
            except ServiceError as exc:
                log.error("model.load_failed", model=name, reason=exc.message)
        self._starting = False
        await self._changed()

    async def load(
        self, name: str, config: config_pb.ModelConfig | None = None, *, notify: bool = True
    ) -> None:
        """Loads (or reloads) every version of ``name``; ``config`` replaces config.pbtxt when given.
        On failure the versions that served before keep serving and the reason is raised and kept."""
        _check_model_name(name)
        entry = self._entries.setdefault(name, _Entry(name))
        async with entry.lock:
            if not entry.versions:
                entry.state = LOADING
            try:
                loaded = await self._load_versions(name, config)
            except ModelNotFound:
                if not entry.versions:
                    self._entries.pop(name, None)
                    raise
                raise ModelLoadFailed(
                    f"model {name!r} is no longer in the repository; the loaded versions keep serving"
                ) from None
            except Exception as exc:
                reason = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                entry.reason = f"load failed: {reason}"
                entry.state = READY if entry.versions else UNAVAILABLE
                log.warning(
                    "model.load_failed", model=name, reason=reason, still_serving=sorted(entry.versions)
                )
                if not entry.versions:
                    self._set_failure(name, reason)
                if notify:
                    await self._changed()
                raise ModelLoadFailed(
                    f"failed to load model {name!r}: {reason}"
                    + (f"; versions {sorted(entry.versions)} keep serving" if entry.versions else "")
                ) from None
            old = entry.versions
            entry.versions = loaded
            entry.state = READY
            entry.reason = ""
            self._set_failure(name, None)
            self._rebuild_routes()
            for mv in loaded.values():
                mv.stats.ready.set(1)
            log.info("model.loaded", model=name, versions=sorted(loaded))
        if old:
            for mv in old.values():
                self._retire_later(mv, still_ready=mv.version in loaded)
        if notify:
            await self._changed()

    async def _load_versions(
        self, name: str, config: config_pb.ModelConfig | None
    ) -> dict[int, ModelVersion]:
        model_dir = self.repository / name
        if config is not None:
            spec = spec_from_config(config, name=name, default_max_queue_size=self._default_max_queue_size)
        elif not model_dir.is_dir():
            raise ModelNotFound(f"model {name!r} not found in the repository")
        else:
            spec = read_config(model_dir, default_max_queue_size=self._default_max_queue_size)
        backend = self._backend(spec)
        dirs = version_dirs(model_dir)
        if not dirs:
            raise InvalidModelConfig(f"model {name!r} has no numeric version folder (e.g. {name}/1/)")
        for path in dirs.values():
            self._check_code(spec, path, in_repository=True)
        loaded: dict[int, ModelVersion] = {}
        try:
            for version, path in sorted(dirs.items()):
                model = await backend.load(spec, version, path)
                loaded[version] = self._make_version(spec, version, model)
        except BaseException:
            for mv in loaded.values():
                await mv.model.unload()
            raise
        return loaded

    def _backend(self, spec: ModelSpec) -> Backend:
        backend = self._backends.get(spec.backend)
        if backend is None:
            raise InvalidModelConfig(
                f"backend {spec.backend!r} is not available (have {sorted(self._backends)})"
            )
        return backend

    def _make_version(self, spec: ModelSpec, version: int, model: LoadedModel) -> ModelVersion:
        vs = str(version)
        stats = ModelStats(spec.name, vs)
        return ModelVersion(
            name=spec.name,
            version=version,
            version_str=vs,
            spec=spec,
            model=model,
            stats=stats,
            codec=Codec(spec, vs, self._limits),
            scheduler=Scheduler(spec, vs, model, stats, self._tracer),
        )

    async def unload(self, name: str, *, notify: bool = True) -> None:
        """Stops routing to ``name``, lets queued and running requests finish, then unloads."""
        _check_model_name(name)
        entry = self._entries.get(name)
        if entry is None or not entry.versions:
            if entry is None and not (self.repository / name).is_dir():
                raise ModelNotFound(f"model {name!r} not found in the repository")
            self._set_failure(name, None)
            return
        async with entry.lock:
            old = entry.versions
            entry.versions = {}
            entry.state = UNLOADING
            entry.reason = "unloading"
            self._rebuild_routes()
            if notify:
                await self._changed()
            for mv in old.values():
                await self._retire(mv)
            entry.state = UNAVAILABLE
            entry.reason = "unloaded"
            self._set_failure(name, None)
        log.info("model.unloaded", model=name)

    async def _retire(self, mv: ModelVersion, still_ready: bool = False) -> None:
        if not still_ready:
            mv.stats.ready.set(0)
        await mv.scheduler.drain(self._drain_timeout_s)
        try:
            await mv.model.unload()
        except Exception as exc:  # an unload hook failing must not take others down
            log.warning("model.unload_failed", model=mv.name, version=mv.version, error=str(exc))

    def _rebuild_routes(self) -> None:
        self._table.rebuild({name: entry.versions for name, entry in self._entries.items()})

    # -- per-version control (the registry follower) --------------------------------------------

    def loaded_versions(self, name: str) -> dict[int, ModelVersion]:
        """The versions of ``name`` that serve now (empty when none)."""
        entry = self._entries.get(name)
        return dict(entry.versions) if entry is not None else {}

    def set_routing(self, name: str, routing: Routing | None) -> None:
        """Weights and aliases of ``name`` (None: plain routing, versionless = highest version)."""
        self._table.set_routing(name, routing)
        self._rebuild_routes()

    async def load_version(
        self, name: str, version: int, version_dir: Path, config: config_pb.ModelConfig
    ) -> ModelVersion:
        """Loads one version of ``name`` from ``version_dir`` (any folder) with ``config``, beside
        the versions already serving; a version of the same number is replaced once the new one is
        loaded. On failure the versions that served keep serving: ModelLoadFailed with the reason."""
        _check_model_name(name)
        entry = self._entries.setdefault(name, _Entry(name))
        async with entry.lock:
            if not entry.versions:
                entry.state = LOADING
            try:
                spec = spec_from_config(
                    config, name=name, default_max_queue_size=self._default_max_queue_size
                )
                backend = self._backend(spec)
                self._check_code(spec, version_dir)
                model = await backend.load(spec, version, version_dir)
            except Exception as exc:
                reason = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                entry.reason = f"version {version} load failed: {reason}"
                entry.state = READY if entry.versions else UNAVAILABLE
                log.warning(
                    "model.load_failed",
                    model=name,
                    version=version,
                    reason=reason,
                    still_serving=sorted(entry.versions),
                )
                await self._changed()
                raise ModelLoadFailed(
                    f"failed to load version {version} of model {name!r}: {reason}"
                    + (f"; versions {sorted(entry.versions)} keep serving" if entry.versions else "")
                ) from None
            mv = self._make_version(spec, version, model)
            old = entry.versions.get(version)
            entry.versions = {**entry.versions, version: mv}
            entry.state = READY
            entry.reason = ""
            self._rebuild_routes()
            mv.stats.ready.set(1)
            log.info("model.version_loaded", model=name, version=version)
        if old is not None:
            self._retire_later(old, still_ready=True)
        await self._changed()
        return mv

    async def unload_versions(self, name: str, versions: Iterable[int]) -> None:
        """Stops routing to ``versions`` of ``name``; queued and running requests finish (in the
        background, up to the drain timeout), then they are unloaded."""
        entry = self._entries.get(name)
        if entry is None:
            return
        drop = set(versions)
        async with entry.lock:
            gone = [mv for v, mv in entry.versions.items() if v in drop]
            if not gone:
                return
            entry.versions = {v: mv for v, mv in entry.versions.items() if v not in drop}
            if not entry.versions:
                entry.state = UNAVAILABLE
                entry.reason = "unloaded"
            self._rebuild_routes()
        for mv in gone:
            self._retire_later(mv)
        log.info("model.versions_unloaded", model=name, versions=sorted(drop))
        await self._changed()

    def _retire_later(self, mv: ModelVersion, still_ready: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(mv, still_ready=still_ready))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self, names: Iterable[str] | None = None) -> None:
        """Unloads everything (server shutdown)."""
        for name in list(names if names is not None else self._entries):
            await self.unload(name, notify=False)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
