"""The model server follows the registry: it serves what is deployed.

At start (and again whenever the registry answers OUT_OF_RANGE because the revision it resumed from
was compacted) the follower lists the deployments (``ListDeployments``, which returns the revision
it reflects) and the aliases of the deployed models, then follows ``Watch`` from that revision. Every
change is applied in commit order and the revision remembered only once it is applied; a broken
stream is re-opened from the last revision seen, after a backoff (``registry_backoff_min_s``
doubling up to ``registry_backoff_max_s``, with jitter), so no change is lost across registry
restarts or network cuts. The loop is :class:`modelserve_common.watch.WatchFollower` (shared with
the gateway); this module is what the model server does with what it lists and what changes.

For each model with a deployment, reconciling means:

- every deployed version (mirror targets included) not yet loaded is fetched, its sha256 verified
  on a private copy (:mod:`artifacts`), and loaded with a config built from the registry's record
  (``ModelManager.load_version``). Success marks a PENDING version READY; a mismatch or a load
  failure marks it FAILED with the reason (``UpdateModelVersion``), and it is not retried until its
  record changes (e.g. set back to PENDING) or the follower re-lists;
- once at least one deployed version serves, loaded versions that are no longer deployed are
  unloaded; while none serves, the versions that served before keep serving;
- an empty deployment unloads the model;
- versionless requests are split by the deployment's weights among the loaded non-mirror targets;
  aliases route to their version.

Failure isolation: a version that cannot be staged or loaded is FAILED in the registry (with the
reason), counted in the manager's failures (``modelserve_model_server_failed_models``), and only
that model is not ready. A later change of the model's deployment (e.g. re-deploying it once the
cause is fixed) retries its failed versions.

Ownership: every deployment seen records the model's owner (``Deployment.tenant``,
``Deployment.shared``) in :class:`~modelserve_model_server.ownership.Ownership`; it is kept while
versions of the model serve, and forgotten once nothing of it does.

Readiness: the server is not ready until the first listing is loaded; with ``strict_readiness``
every deployed model (with a CPU-backend version) must also serve at least one version. Versions of
backend ``triton`` are not loaded here: with ``MODEL_SERVER_TRITON_URL`` set, requests for a model
that is not local go to Triton by name (Triton serves it from its own repository).
"""

from __future__ import annotations

import grpc
import structlog
from google.protobuf import field_mask_pb2

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve.registry.v1 import registry_service_pb2_grpc as registry_grpc
from modelserve_common.errors import ServiceError
from modelserve_common.watch import WatchFollower
from modelserve_model_server.artifacts import ArtifactError, ArtifactStore, model_config
from modelserve_model_server.manager import ModelManager
from modelserve_model_server.ownership import Ownership
from modelserve_model_server.routing_table import Routing

log = structlog.get_logger(__name__)

GATE = "registry"
_DELETED = registry_pb.CHANGE_TYPE_DELETED
_FAILED = registry_pb.ModelVersion.STATUS_FAILED
_READY = registry_pb.ModelVersion.STATUS_READY


class RegistryFollower:
    """Keeps a :class:`ModelManager` in step with the registry's deployments."""

    def __init__(
        self,
        manager: ModelManager,
        stub: registry_grpc.RegistryServiceStub,
        artifacts: ArtifactStore,
        *,
        call_timeout_s: float = 10.0,
        watch_timeout_s: float = 3600.0,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 10.0,
        ownership: Ownership | None = None,
    ) -> None:
        self._manager = manager
        self._ownership = ownership if ownership is not None else Ownership()
        self._stub = stub
        self._artifacts = artifacts
        self._call_timeout_s = call_timeout_s
        self._synced = False
        self._deployments: dict[str, registry_pb.Deployment] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._records: dict[tuple[str, int], registry_pb.ModelVersion] = {}
        self._failed: dict[tuple[str, int], str] = {}
        # versions this follower loaded, with the config they were loaded with
        self._mine: dict[str, dict[int, config_pb.ModelConfig]] = {}
        self._managed: set[str] = set()  # models the registry decides (had a deployment)
        self.connected = False
        self._watch = WatchFollower(
            stub.Watch,
            name="model_server",
            relist=self._list,
            apply=self._apply,
            on_lost=self._lost,
            watch_timeout_s=watch_timeout_s,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Holds readiness until the first listing is loaded (call before start-up loading)."""
        await self._manager.set_readiness_gate(GATE, holding=True)

    def start(self) -> None:
        self._watch.start()

    async def close(self) -> None:
        await self._watch.stop()

    @property
    def revision(self) -> int | None:
        """The last registry revision applied (None before the first listing)."""
        return self._watch.revision

    @property
    def synced(self) -> bool:
        """The first listing has been loaded."""
        return self._synced

    async def wait_for_revision(self, revision: int, timeout_s: float = 10.0) -> None:
        """Waits until every change up to ``revision`` is applied (tests, tools)."""
        await self._watch.wait_for_revision(revision, timeout_s)

    def logging_policy(self, model: str) -> tuple[registry_pb.PredictionLogging, str] | None:
        """The prediction-logging policy of the model's deployment and the model's owner (None:
        not deployed)."""
        dep = self._deployments.get(model)
        return (dep.prediction_logging, dep.tenant) if dep is not None else None

    # -- listing --------------------------------------------------------------------------------

    def _lost(self, exc: BaseException | None) -> None:
        self.connected = False

    async def _list(self) -> int:
        listed = await self._stub.ListDeployments(
            registry_pb.ListDeploymentsRequest(), timeout=self._call_timeout_s
        )
        deployments = {d.model: d for d in listed.deployments}
        aliases: dict[str, dict[str, int]] = {}
        for model in deployments:
            found = await self._stub.ListAliases(
                registry_pb.ListAliasesRequest(model=model), timeout=self._call_timeout_s
            )
            aliases[model] = {a.alias: int(a.version) for a in found.aliases}
        self.connected = True
        for dep in deployments.values():
            self._own(dep)
        self._deployments = deployments
        self._aliases = aliases
        self._records.clear()  # statuses may have changed while we were away
        self._failed.clear()
        log.info("registry.listed", revision=listed.revision, deployments=sorted(deployments))
        for model in sorted(set(deployments) | self._managed):
            await self._reconcile(model)
        self._synced = True
        await self._update_gate()
        return int(listed.revision)

    # -- applying changes -----------------------------------------------------------------------

    async def _apply(self, change: registry_pb.WatchResponse) -> None:
        self.connected = True
        kind = change.WhichOneof("resource")
        deleted = change.type == _DELETED
        if kind == "deployment":
            dep = change.deployment
            self._own(dep)
            for key in [k for k in self._failed if k[0] == dep.model]:
                del self._failed[key]  # the deployment changed: try its failed versions again
            if deleted or not dep.targets:
                self._deployments.pop(dep.model, None)
            else:
                self._deployments[dep.model] = dep
                if dep.model not in self._aliases:
                    found = await self._stub.ListAliases(
                        registry_pb.ListAliasesRequest(model=dep.model), timeout=self._call_timeout_s
                    )
                    self._aliases[dep.model] = {a.alias: int(a.version) for a in found.aliases}
            await self._reconcile(dep.model)
        elif kind == "alias":
            alias = change.alias
            table = self._aliases.setdefault(alias.model, {})
            if deleted:
                table.pop(alias.alias, None)
            else:
                table[alias.alias] = int(alias.version)
            if alias.model in self._managed:
                self._route(alias.model)
        elif kind == "model_version":
            record = change.model_version
            key = (record.model, int(record.version))
            if deleted:
                self._records.pop(key, None)
                return
            self._records[key] = record
            if record.status != _FAILED and self._failed.pop(key, None) is not None:
                await self._reconcile(record.model)  # set back to PENDING/READY: try again
        elif kind == "model" and deleted:
            self._deployments.pop(change.model.name, None)
            self._aliases.pop(change.model.name, None)
            if change.model.name in self._managed:
                await self._reconcile(change.model.name)
            if change.model.name not in self._managed:
                self._ownership.forget(change.model.name)
        else:
            return
        await self._update_gate()

    async def _record(self, model: str, version: int) -> registry_pb.ModelVersion | None:
        key = (model, version)
        found = self._records.get(key)
        if found is None:
            try:
                answer = await self._stub.GetModelVersion(
                    registry_pb.GetModelVersionRequest(model=model, version=str(version)),
                    timeout=self._call_timeout_s,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    log.warning("registry.version_missing", model=model, version=version)
                    return None
                raise
            found = self._records[key] = answer.model_version
        return found

    async def _reconcile(self, model: str) -> None:
        dep = self._deployments.get(model)
        targets = {int(t.version_number): t for t in dep.targets} if dep is not None else {}
        if targets:
            self._managed.add(model)
        elif model not in self._managed:
            return
        serving = self._manager.loaded_versions(model)
        mine = self._mine.setdefault(model, {})
        for v in [v for v in mine if v not in serving]:  # unloaded behind our back
            del mine[v]
        for version in sorted(targets):
            record = await self._record(model, version)
            if record is None or record.backend == "triton":
                continue
            if (model, version) in self._failed:
                continue
            try:
                config = model_config(model, record, dep.batching_overrides if dep is not None else None)
            except ArtifactError as exc:
                await self._fail(model, version, str(exc))
                continue
            if mine.get(version) == config:
                continue
            await self._load(model, version, record, config)
        live = {v for v in targets if v in mine}
        serving = self._manager.loaded_versions(model)
        if not targets:
            drop = set(serving)
        elif live:
            drop = {v for v in serving if v not in live}
        else:
            drop = set()  # nothing deployed serves yet: what served before keeps serving
        if drop:
            await self._manager.unload_versions(model, drop)
            for v in drop:
                if mine.pop(v, None) is not None:
                    self._artifacts.remove(model, v)
        if not targets and not self._manager.loaded_versions(model):
            self._managed.discard(model)
            self._mine.pop(model, None)
            self._manager.set_routing(model, None)
            self._ownership.forget(model)
            return
        self._route(model)

    def _route(self, model: str) -> None:
        dep = self._deployments.get(model)
        weights = (
            {int(t.version_number): int(t.weight) for t in dep.targets if not t.mirror and t.weight > 0}
            if dep is not None
            else {}
        )
        mirrors = tuple(int(t.version_number) for t in dep.targets if t.mirror) if dep is not None else ()
        self._manager.set_routing(
            model, Routing(weights=weights, aliases=dict(self._aliases.get(model, {})), mirrors=mirrors)
        )

    async def _load(
        self, model: str, version: int, record: registry_pb.ModelVersion, config: config_pb.ModelConfig
    ) -> None:
        try:
            staged = await self._artifacts.stage(model, version, record)
            await self._manager.load_version(model, version, staged.version_dir, config)
        except ArtifactError as exc:
            await self._fail(model, version, str(exc))
            return
        except ServiceError as exc:
            await self._fail(model, version, exc.message)
            return
        self._mine.setdefault(model, {})[version] = config
        log.info("registry.version_serving", model=model, version=version)
        if record.status != _READY:
            await self._mark(model, version, _READY, "")

    async def _fail(self, model: str, version: int, reason: str) -> None:
        log.warning("registry.version_failed", model=model, version=version, reason=reason)
        self._failed[(model, version)] = reason
        record = self._records.get((model, version))
        if record is None or record.status != _FAILED or record.status_message != reason:
            await self._mark(model, version, _FAILED, reason)

    async def _mark(
        self, model: str, version: int, status: registry_pb.ModelVersion.Status, message: str
    ) -> None:
        """Records a version's status in the registry; a failure to do so is logged, not fatal."""
        try:
            answer = await self._stub.UpdateModelVersion(
                registry_pb.UpdateModelVersionRequest(
                    model_version=registry_pb.ModelVersion(
                        model=model, version=version, status=status, status_message=message[:4000]
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["status", "status_message"]),
                ),
                timeout=self._call_timeout_s,
            )
            self._records[(model, version)] = answer.model_version
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "registry.status_not_recorded",
                model=model,
                version=version,
                status=registry_pb.ModelVersion.Status.Name(status),
                code=exc.code().name,
                reason=exc.details(),
            )

    def _own(self, dep: registry_pb.Deployment) -> None:
        if dep.tenant and (dep.targets or dep.model in self._managed):
            self._ownership.set_owner(dep.model, dep.tenant, dep.shared)

    async def _update_gate(self) -> None:
        deployed = {(m, int(t.version_number)) for m, d in self._deployments.items() for t in d.targets}
        self._manager.set_failures(GATE, {k: r for k, r in self._failed.items() if k in deployed})
        required = set()
        for model, dep in self._deployments.items():
            for t in dep.targets:
                record = self._records.get((model, int(t.version_number)))
                if record is None or record.backend != "triton":
                    required.add(model)
                    break
        await self._manager.set_readiness_gate(GATE, holding=not self._synced, required=required)
