"""Authentication: API keys (verified by the registry, cached briefly), JWTs (one algorithm fixed
by configuration) and the bootstrap admin key. Produces a Principal; secrets never reach a log."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import jwt
import structlog

from modelserve_common.context import SCOPES_HEADER, TENANT_HEADER
from modelserve_common.errors import Unauthenticated
from modelserve_common.identity import ADMIN, ALL_SCOPES, TENANT_ADMIN
from modelserve_gateway.audit import audit
from modelserve_gateway.metrics import AUTH_FAILURES, auth_failure_reason
from modelserve_gateway.ratelimit import Limit
from modelserve_gateway.registry_cache import RegistryCache, VerifiedKey
from modelserve_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: kind ("api_key", "jwt", "admin", "anonymous"), an id that is not a secret,
    the tenant ("" = trusted, every tenant), scopes and the caller's own rate limit."""

    kind: str
    id: str
    tenant: str
    scopes: frozenset[str]
    limit: Limit | None = None
    _metadata: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if self.tenant:
            md = ((TENANT_HEADER, self.tenant), (SCOPES_HEADER, ",".join(sorted(self.scopes))))
            object.__setattr__(self, "_metadata", md)

    def metadata(self) -> list[tuple[str, str]]:
        """Downstream metadata naming the caller (the registry scopes what it returns by it)."""
        return list(self._metadata)


ANONYMOUS = Principal("anonymous", "anonymous", "", frozenset(ALL_SCOPES))
"""The principal when auth is disabled: trusted, like an in-cluster caller."""

ADMIN_ID = "bootstrap-admin"
MAX_CACHED_PRINCIPALS = 10_000
ADMIN_PRINCIPAL = Principal("admin", ADMIN_ID, "", frozenset(ALL_SCOPES))


def tenant_scopes(raw: frozenset[str]) -> frozenset[str]:
    """A tenant principal's scopes: "admin" is platform-only, so a tenant credential's "admin"
    means "tenant-admin" (the tenant's own keys, models, deployments, pipelines)."""
    return frozenset(TENANT_ADMIN if s == ADMIN else s for s in raw)


@dataclass(frozen=True)
class Credentials:
    """What a request presented: the Authorization header and the x-api-key header."""

    authorization: str | None
    api_key: str | None


class Authenticator:
    def __init__(self, settings: GatewaySettings, cache: RegistryCache) -> None:
        self._enabled = settings.auth_enabled
        self._admin = settings.admin_api_key.get_secret_value().encode() if settings.admin_api_key else None
        self._cache = cache
        self._alg = settings.jwt_algorithm
        self._jwt_key = settings.jwt_key.get_secret_value() if settings.jwt_key else None
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._tenant_claim = settings.jwt_tenant_claim
        self._leeway = settings.jwt_leeway_s
        self._admin_claim = settings.jwt_platform_admin_claim
        self._admin_issuer = settings.jwt_platform_admin_issuer
        if self._admin_issuer and not self._admin_claim:
            raise ValueError(
                "GATEWAY_JWT_PLATFORM_ADMIN_ISSUER needs GATEWAY_JWT_PLATFORM_ADMIN_CLAIM: "
                "a platform administrator is recognised by an explicit claim"
            )
        issuers = [i for i in (self._issuer, self._admin_issuer) if i]
        self._issuers: str | list[str] | None = (
            None if not self._issuer else (issuers[0] if len(issuers) == 1 else issuers)
        )
        self._default_limit = Limit.of(settings.default_rate_limit_rps, settings.default_rate_limit_burst)
        # key id -> (the registry cache's VerifiedKey, its Principal): reused only while the cache
        # answers with that very VerifiedKey, so the cache's TTL, expiry and Watch revocation
        # decide as before; this only saves building the same Principal on every request.
        self._principals: dict[str, tuple[VerifiedKey, Principal]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    async def authenticate(self, creds: Credentials, action: str) -> Principal:
        if not self._enabled:
            return ANONYMOUS
        try:
            return await self._authenticate(creds)
        except Unauthenticated as exc:
            AUTH_FAILURES.labels(auth_failure_reason(exc.message)).inc()
            audit(
                who="unknown",
                tenant="",
                action=action,
                resource="",
                outcome="UNAUTHENTICATED",
                reason=exc.message,
            )
            log.info("auth.failed", action=action, reason=exc.message)
            raise

    async def _authenticate(self, creds: Credentials) -> Principal:
        token: str | None = None
        if creds.authorization:
            scheme, _, value = creds.authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthenticated("Authorization must be 'Bearer <API key or JWT>'")
            token = value.strip()
        elif creds.api_key:
            token = creds.api_key.strip()
        if not token:
            raise Unauthenticated("credentials required: Authorization: Bearer <key> or x-api-key")
        if self._admin is not None and hmac.compare_digest(token.encode(), self._admin):
            return ADMIN_PRINCIPAL
        if token.count(".") == 2 and creds.authorization:
            return self._jwt(token)
        key = await self._cache.verify(token)
        hit = self._principals.get(key.key)
        if hit is not None and hit[0] is key:
            return hit[1]
        limit = Limit.of(key.rate, key.burst) or self._default_limit
        principal = Principal("api_key", key.key, key.tenant, tenant_scopes(key.scopes), limit)
        if len(self._principals) >= MAX_CACHED_PRINCIPALS:
            self._principals.clear()
        self._principals[key.key] = (key, principal)
        return principal

    def _jwt(self, token: str) -> Principal:
        if self._alg is None or self._jwt_key is None:
            raise Unauthenticated("JWT authentication is not configured")
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=[self._alg],
                audience=self._audience,
                issuer=self._issuers,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
        if self._platform_admin(claims):
            log.info("auth.jwt_platform_admin", sub=str(claims["sub"]))
            return Principal("jwt_admin", str(claims["sub"]), "", frozenset(ALL_SCOPES))
        if (
            self._admin_issuer
            and claims.get("iss") == self._admin_issuer
            and self._issuer != self._admin_issuer
        ):
            raise Unauthenticated(
                f"token from the platform-admin issuer lacks the {self._admin_claim!r} claim"
            )
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"token has no {self._tenant_claim!r} claim")
        raw = claims.get("scope", claims.get("scopes", ""))
        scopes = frozenset(raw.split() if isinstance(raw, str) else [str(s) for s in raw])
        return Principal("jwt", str(claims["sub"]), tenant, tenant_scopes(scopes), self._default_limit)

    def _platform_admin(self, claims: dict[str, object]) -> bool:
        """Only through the configured claim, JSON true (not "true", not 1), and, when configured,
        from the platform-admin issuer."""
        if not self._admin_claim or claims.get(self._admin_claim) is not True:
            return False
        return not self._admin_issuer or claims.get("iss") == self._admin_issuer
