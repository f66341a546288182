"""What the gateway keeps from the registry: verified API keys (short TTL) and deployments
(owner, canary weights, per-model limit), both corrected at once by the registry's Watch stream
(followed by :class:`modelserve_common.watch.WatchFollower`: resume after the last revision,
OUT_OF_RANGE -> follow from the head again, backoff with jitter; both caches are cleared whenever
a stream opens and keys whenever one breaks)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import grpc
import structlog

from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.errors import NotFound, Unauthenticated, Unavailable
from modelserve_common.watch import WatchFollower
from modelserve_gateway.clients import Upstream

log = structlog.get_logger(__name__)

_DOWN = object()  # cached marker: the registry could not be asked

_SVC = "/modelserve.registry.v1.RegistryService/"


@dataclass(frozen=True)
class VerifiedKey:
    key: str
    tenant: str
    scopes: frozenset[str]
    rate: float
    burst: int
    expires_at: float | None  # wall clock (time.time()) when the secret stops working


def model_not_found(model: str) -> str:
    """The NOT_FOUND message for a model a caller may not use: word for word what the model server
    answers for a model it does not have, so a refusal reveals nothing."""
    return f"model {model!r} not found in the repository"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class RegistryCache:
    def __init__(
        self,
        registry: Upstream,
        *,
        key_ttl_s: float,
        deployment_ttl_s: float,
        watch_timeout_s: float = 86400.0,
        watch_backoff_min_s: float = 0.2,
        watch_backoff_max_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._key_ttl = key_ttl_s
        self._dep_ttl = deployment_ttl_s
        self._keys: dict[str, tuple[VerifiedKey, float]] = {}
        self._deployments: dict[str, tuple[object, float]] = {}
        self._verify = registry.typed_unary(
            _SVC + "VerifyApiKey", registry_pb.VerifyApiKeyResponse.FromString
        )
        self._get_dep = registry.typed_unary(
            _SVC + "GetDeployment", registry_pb.GetDeploymentResponse.FromString
        )
        self._follower = WatchFollower(
            registry.typed_stream(_SVC + "Watch", registry_pb.WatchResponse.FromString),
            name="gateway",
            relist=self._relist,
            apply=self._apply,
            on_open=self._opened,
            on_lost=self._lost,
            watch_timeout_s=watch_timeout_s,
            backoff_min_s=watch_backoff_min_s,
            backoff_max_s=watch_backoff_max_s,
        )
        self._inflight: dict[str, asyncio.Task[tuple[object, float]]] = {}
        self.retry_down_s = 1.0
        self.watching = asyncio.Event()

    # API keys ------------------------------------------------------------------------------

    async def verify(self, secret: str) -> VerifiedKey:
        digest = secret_digest(secret)
        now = time.monotonic()
        hit = self._keys.get(digest)
        if (
            hit is not None
            and hit[1] > now
            and (hit[0].expires_at is None or hit[0].expires_at > time.time())
        ):
            return hit[0]
        try:
            resp = await self._verify(
                registry_pb.VerifyApiKeyRequest(secret=secret), timeout=self._registry.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.PERMISSION_DENIED,
            ):
                raise Unauthenticated("invalid API key") from None
            raise Unavailable(f"cannot verify API key: registry answered {exc.code().name}") from None
        verified = VerifiedKey(
            key=resp.key,
            tenant=resp.tenant,
            scopes=frozenset(resp.scopes),
            rate=resp.rate_limit.requests_per_second,
            burst=resp.rate_limit.burst,
            expires_at=resp.expire_time.ToNanoseconds() / 1e9 if resp.HasField("expire_time") else None,
        )
        self._keys[digest] = (verified, now + self._key_ttl)
        return verified

    def forget_key(self, key: str) -> int:
        stale = [d for d, (v, _) in self._keys.items() if v.key == key]
        for d in stale:
            del self._keys[d]
        return len(stale)

    # Deployments ----------------------------------------------------------------------------

    async def deployment(self, model: str, *, down_ok: bool = False) -> registry_pb.Deployment | None:
        """The model's deployment; None when the registry has no such model (and, with
        ``down_ok``, when the registry is down).

        Stale-while-revalidate: once a model has been looked up, requests never wait for the
        registry again; an expired entry is refreshed by one background lookup. Only the first
        lookup of a model (or the first after a Watch change) waits, and concurrent requests
        share it. A registry that is down is remembered for ``retry_down_s`` (Unavailable)."""
        entry = self._deployments.get(model)
        if entry is None:
            task = self._inflight.get(model)
            if task is None:
                task = self._inflight[model] = asyncio.create_task(self._fetch(model))
            entry = await asyncio.shield(task)
        elif entry[1] <= time.monotonic() and model not in self._inflight:
            self._inflight[model] = asyncio.create_task(self._fetch(model))
        value = entry[0]
        if value is _DOWN:
            if down_ok:
                return None
            raise Unavailable(f"cannot look up model {model!r}: registry unavailable")
        return value  # type: ignore[return-value]

    async def _fetch(self, model: str) -> tuple[object, float]:
        try:
            resp = await self._get_dep(
                registry_pb.GetDeploymentRequest(model=model), timeout=self._registry.timeout_s
            )
            entry: tuple[object, float] = (resp.deployment, time.monotonic() + self._dep_ttl)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                entry = (None, time.monotonic() + self._dep_ttl)
            else:
                previous = self._deployments.get(model)
                if previous is None or previous[0] is not _DOWN:  # log the transition, not every retry
                    log.warning("registry.lookup_failed", model=model, code=exc.code().name)
                entry = (_DOWN, time.monotonic() + self.retry_down_s)
        except Exception as exc:  # a background refresh must never die silently
            log.warning("registry.lookup_failed", model=model, error=type(exc).__name__)
            entry = (_DOWN, time.monotonic() + self.retry_down_s)
        finally:
            self._inflight.pop(model, None)
        self._deployments[model] = entry
        return entry

    async def usable_deployment(self, model: str, tenant: str) -> registry_pb.Deployment | None:
        """The model's deployment when ``tenant`` may use it: the tenant's own, or shared
        (Deployment.shared, set by a platform admin). None when the registry has no deployment of
        that name (a local repository model of the model server, say): the gateway does not
        decide then, the model server (the authority) does with the forwarded identity. Another
        tenant's unshared model raises NotFound with the message a missing model gets."""
        dep = await self.deployment(model)
        if dep is not None and tenant and dep.tenant != tenant and not dep.shared:
            raise NotFound(model_not_found(model))
        return dep

    # Watch ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    @property
    def revision(self) -> int:
        """The last registry revision applied (-1: none yet, follow from the registry's head)."""
        rev = self._follower.revision
        return -1 if rev is None else rev

    def apply(self, change: registry_pb.WatchResponse) -> None:
        kind = change.WhichOneof("resource")
        if kind == "api_key":
            n = self.forget_key(change.api_key.key)
            log.info("auth.key_cache_cleared", key=change.api_key.key, entries=n, revision=change.revision)
        elif kind == "deployment":
            self._deployments.pop(change.deployment.model, None)
        elif kind == "model":  # deleted, or its shared flag changed: look the deployment up again
            self._deployments.pop(change.model.name, None)
        elif kind == "tenant_resource":
            self._keys.clear()

    async def _apply(self, change: registry_pb.WatchResponse) -> None:
        self.apply(change)

    async def _relist(self) -> int:
        """No listing to load: the caches refill on demand; follow from the registry's head."""
        return -1

    def _opened(self) -> None:
        # Anything cached before the stream was up may be stale.
        self._keys.clear()
        self._deployments.clear()
        self.watching.set()

    def _lost(self, exc: BaseException | None) -> None:
        self.watching.clear()
        self._keys.clear()
