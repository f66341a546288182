"""The protection layer both doors share: authentication, scopes, tenant ownership of models,
rate limits (per key, per model), and canary routing. One object, called the same way by the
REST app and the gRPC front door."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import structlog

from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.errors import NotFound, PermissionDenied, ResourceExhausted, Unavailable
from modelserve_gateway.audit import audit
from modelserve_gateway.auth import MAX_CACHED_PRINCIPALS, Authenticator, Credentials, Principal
from modelserve_gateway.metrics import AUTH_FAILURES, RATE_LIMIT_DECISIONS
from modelserve_gateway.protection import InFlightLimiter
from modelserve_gateway.ratelimit import LIMITED, Decision, Limit, LimiterUnavailable, RateLimiter
from modelserve_gateway.registry_cache import RegistryCache, model_not_found
from modelserve_gateway.scopes import PUBLIC_METHODS, has_scope, required_scope
from modelserve_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)


STABLE_PRINCIPALS = frozenset({"anonymous", "admin", "api_key"})
"""Principal kinds the authenticator hands out as the same object request after request (auth
off, the bootstrap admin, a cached API key): their Admission is built once."""


class RateLimited(ResourceExhausted):
    def __init__(self, message: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.headers = headers


@dataclass
class Admission:
    """The outcome of admitting a request: who, metadata to send downstream, headers to return."""

    principal: Principal
    metadata: list[tuple[str, str]]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Routed:
    """A model request after ownership, per-model limit and canary: the version to ask for
    ("" = let the model server choose) and response headers."""

    version: str
    headers: list[tuple[str, str]]


class Guard:
    def __init__(
        self, settings: GatewaySettings, auth: Authenticator, limiter: RateLimiter, cache: RegistryCache
    ) -> None:
        self._auth = auth
        self._limiter = limiter
        self._cache = cache
        self._sticky_per_key = settings.canary_sticky_per_key
        self._rng = random.Random()
        self.in_flight = InFlightLimiter(settings.max_in_flight)
        self._admissions: dict[int, tuple[Principal, Admission]] = {}

    @property
    def cache(self) -> RegistryCache:
        return self._cache

    async def admit(self, method: str, creds: Credentials) -> Admission:
        """Authenticates, checks the method's scope and the caller's rate limit."""
        if method in PUBLIC_METHODS and not (creds.authorization or creds.api_key):
            return Admission(_anonymous_public(), [])
        principal = await self._auth.authenticate(creds, method)
        needed = required_scope(method)
        if not has_scope(principal.scopes, needed):
            AUTH_FAILURES.labels("insufficient_scope").inc()
            audit(
                who=principal.id,
                tenant=principal.tenant,
                action=method,
                resource="",
                outcome="PERMISSION_DENIED",
            )
            raise PermissionDenied(
                f"{method} needs scope {needed!r}; the credentials carry {sorted(principal.scopes)}"
            )
        if principal.limit is not None:
            decision = await self._check(f"key:{principal.id}", principal.limit, "key")
            return Admission(principal, principal.metadata(), decision.headers())
        if principal.kind not in STABLE_PRINCIPALS:
            return Admission(principal, principal.metadata())
        # nothing per request: one Admission per (cached) principal, never mutated by its users
        hit = self._admissions.get(id(principal))
        if hit is not None and hit[0] is principal:
            return hit[1]
        if len(self._admissions) >= MAX_CACHED_PRINCIPALS:
            self._admissions.clear()
        adm = Admission(principal, principal.metadata())
        self._admissions[id(principal)] = (principal, adm)
        return adm

    async def _check(self, key: str, limit: Limit, scope: str) -> Decision:
        try:
            decision = await self._limiter.check(key, limit)
        except LimiterUnavailable:
            RATE_LIMIT_DECISIONS.labels(scope, "unavailable").inc()
            raise Unavailable("rate limiter unavailable") from None
        RATE_LIMIT_DECISIONS.labels(scope, "allowed" if decision.allowed else "limited").inc()
        if not decision.allowed:
            LIMITED.labels(scope).inc()
            raise RateLimited(
                f"rate limit of {limit.burst} requests per {limit.period_s:g}s exceeded ({scope})",
                decision.headers(),
            )
        return decision

    async def owned_model(self, model: str, tenant: str) -> None:
        """For the lists the gateway filters (statistics of every model): raises NotFound unless
        the registry has a deployment of ``model`` that is ``tenant``'s own or shared (Unavailable
        when the registry cannot be asked). Stricter than a call naming the model, which goes on
        to the model server when the registry has no deployment: in a list the gateway keeps only
        what it can vouch for, whatever the model server left in."""
        if await self._cache.usable_deployment(model, tenant) is None:
            raise NotFound(model_not_found(model))

    async def route_model(
        self, admission: Admission, model: str, version: str, route_key: str | None
    ) -> Routed:
        """Tenant ownership (another tenant's unshared model is NOT_FOUND; a name the registry has
        no deployment for goes on to the model server, which decides with the forwarded tenant
        identity), the deployment's rate limit, and, when no version is named, a version drawn by
        the deployment's weights."""
        principal = admission.principal
        if principal.tenant:
            dep: registry_pb.Deployment | None = await self._cache.usable_deployment(model, principal.tenant)
        else:
            # trusted callers still reach the model server when the registry is down
            dep = await self._cache.deployment(model, down_ok=True)
        headers: list[tuple[str, str]] = []
        if dep is None:
            return Routed(version, headers)
        limit = Limit.of(dep.rate_limit.requests_per_second, dep.rate_limit.burst)
        if limit is not None:
            decision = await self._check(f"model:{model}", limit, "model")
            if not admission.headers:
                headers = decision.headers()
        if not version:
            version = self.pick_version(
                dep,
                route_key
                or (principal.id if self._sticky_per_key and principal.kind != "anonymous" else None),
            )
        return Routed(version, headers)

    def pick_version(self, dep: registry_pb.Deployment, sticky: str | None) -> str:
        targets = [t for t in dep.targets if not t.mirror and t.weight > 0]
        if len(targets) <= 1:
            return str(targets[0].version_number or targets[0].version) if targets else ""
        total = sum(t.weight for t in targets)
        if sticky:
            h = hashlib.blake2b(f"{dep.model}\0{sticky}".encode(), digest_size=8).digest()
            point = int.from_bytes(h, "big") % total
        else:
            point = self._rng.randrange(total)
        for t in targets:
            point -= t.weight
            if point < 0:
                return str(t.version_number or t.version)
        return str(targets[-1].version_number or targets[-1].version)


def _anonymous_public() -> Principal:
    return Principal("anonymous", "public", "", frozenset())
