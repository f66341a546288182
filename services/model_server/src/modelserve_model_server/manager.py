"""The model repository and what is loaded from it.

:class:`ModelManager` resolves (name, version) to a loaded :class:`ModelVersion` (one dict lookup on
the hot path), loads and unloads models (RepositoryModelLoad/Unload, and later the registry's
deployments through the same :meth:`ModelManager.load` / :meth:`ModelManager.unload`), and says
whether the server is ready. A load that fails leaves the versions that served before serving and
records why (RepositoryIndex shows the reason).

The state it works on (entries, routing table, readiness, failures, the index) is in
model_index.py (:class:`ModelIndex`); this module loads and unloads.

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
from collections.abc import Iterable
from pathlib import Path

import structlog

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_common.artifact_uri import check_artifact_path
from modelserve_common.errors import InvalidArgument, ServiceError
from modelserve_model_server.backend import Backend, LoadedModel
from modelserve_model_server.batcher import Scheduler
from modelserve_model_server.codec import Codec
from modelserve_model_server.config import ModelSpec, read_config, spec_from_config, version_dirs
from modelserve_model_server.errors import InvalidModelConfig, ModelLoadFailed, ModelNotFound
from modelserve_model_server.model_index import (
    CODE_BACKENDS,
    LOADING,
    READY,
    UNAVAILABLE,
    UNLOADING,
    Entry,
    ModelIndex,
    check_model_name,
)
from modelserve_model_server.routing_table import ModelVersion
from modelserve_model_server.stats import ModelStats

log = structlog.get_logger(__name__)


class ModelManager(ModelIndex):
    """Loads, unloads and resolves models of one repository folder (constructor: ModelIndex)."""

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
        check_model_name(name)
        entry = self._entries.setdefault(name, Entry(name))
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
        check_model_name(name)
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

    # -- per-version control (the registry follower) --------------------------------------------
    async def load_version(
        self, name: str, version: int, version_dir: Path, config: config_pb.ModelConfig
    ) -> ModelVersion:
        """Loads one version of ``name`` from ``version_dir`` (any folder) with ``config``, beside
        the versions already serving; a version of the same number is replaced once the new one is
        loaded. On failure the versions that served keep serving: ModelLoadFailed with the reason."""
        check_model_name(name)
        entry = self._entries.setdefault(name, Entry(name))
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
