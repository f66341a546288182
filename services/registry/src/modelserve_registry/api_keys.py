"""A tenant's API keys: create (the secret is shown once), read, list, rotate with a grace
period for the previous secret, revoke, and verify (the gateway's call). Secrets are stored as
salted SHA-256 hashes and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets

import structlog

from modelserve_common.identity import ADMIN, TENANT_ADMIN, TENANT_SCOPES, Caller
from modelserve_registry import errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import (
    ApiKey,
    KeySecrets,
    RateLimit,
)
from modelserve_registry.store import MAX_TIME_US, StoreTx, now_us
from modelserve_registry.validation import check_etag, check_rate_limit, require

log = structlog.get_logger(__name__)

KEY_RE = re.compile(r"^k[0-9a-f]{12}$")
SECRET_PREFIX = "ms"


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    return f"{salt}${hashlib.sha256((salt + secret).encode()).hexdigest()}"


def secret_matches(stored: str | None, secret: str) -> bool:
    salt, _, digest = (stored or "x$").partition("$")
    candidate = hashlib.sha256((salt + secret).encode()).hexdigest()
    return hmac.compare_digest(candidate, digest) and stored is not None


def check_scopes(caller: Caller, scopes: list[str]) -> list[str]:
    """The scopes a new key gets, in TENANT_SCOPES order: known, not platform-wide, and none the
    caller lacks."""
    if not scopes:
        raise errors.InvalidField(f"scopes is required: any of {list(TENANT_SCOPES)}")
    for s in scopes:
        if s == ADMIN:
            raise errors.InvalidField(f"scope {ADMIN!r} is platform-only; use {TENANT_ADMIN!r}")
        if s not in TENANT_SCOPES:
            raise errors.InvalidField(f"scope must be one of {list(TENANT_SCOPES)}, got {s!r}")
        if not caller.has(s):
            raise errors.MissingScope(f"a key cannot grant the {s!r} scope that the caller lacks")
    return sorted(set(scopes), key=TENANT_SCOPES.index)


def check_expire_time(expire_time: int | None, now: int) -> None:
    if expire_time is not None and not now < expire_time <= MAX_TIME_US:
        raise errors.InvalidField(
            "expire_time must be in the future and no later than 9999-12-31T23:59:59Z, "
            f"got {expire_time} microseconds since the epoch"
        )


def secret_expiry(key: ApiKey, stored: KeySecrets, secret: str, now: int) -> int | None:
    """When ``secret`` stops working (None: never), or InvalidApiKey: it is neither the current
    secret nor the previous one inside its grace period, or the key is revoked or expired."""
    invalid = errors.InvalidApiKey("invalid API key")
    current_ok = secret_matches(stored.secret_hash, secret)
    previous_ok = secret_matches(stored.previous_hash, secret)
    if key.revoke_time is not None or (key.expire_time is not None and key.expire_time <= now):
        raise invalid
    expires = key.expire_time
    if not current_ok:
        in_grace = stored.previous_expire_time is not None and stored.previous_expire_time > now
        if not (previous_ok and in_grace):
            raise invalid
        assert stored.previous_expire_time is not None
        expires = min(expires or stored.previous_expire_time, stored.previous_expire_time)
    return expires


def _lower(a: float, b: float) -> float:
    """The stricter of two limits where 0 means "no limit of its own"."""
    return min(a, b) if a > 0 and b > 0 else max(a, b)


def effective_limit(key: RateLimit, tenant: RateLimit) -> RateLimit:
    """A key never gets more than its tenant: the lower of the two per field (0 = unset)."""
    return RateLimit(
        requests_per_second=_lower(key.requests_per_second, tenant.requests_per_second),
        burst=int(_lower(key.burst, tenant.burst)),
    )


def check_within_tenant_limit(key: RateLimit, limit: RateLimit, tenant: str) -> None:
    """A tenant caller may not give a key more than the tenant's own rate limit."""
    over_rate = 0 < limit.requests_per_second < key.requests_per_second
    over_burst = 0 < limit.burst < key.burst
    if over_rate or over_burst:
        raise errors.InvalidField(
            f"rate_limit: the key's limit ({key.requests_per_second:g} requests/s, burst {key.burst}) "
            f"exceeds tenant {tenant!r}'s limit ({limit.requests_per_second:g} requests/s, "
            f"burst {limit.burst}); only a platform administrator may set it higher"
        )


class ApiKeyOps(ServiceCore):
    async def _key(self, tx: StoreTx, caller: Caller, tenant: str, key: str) -> tuple[ApiKey, KeySecrets]:
        await self._tenant(tx, caller, tenant)
        found = await tx.get_key(key) if KEY_RE.match(key) else None
        if found is None or found[0].tenant != tenant or found[0].revoke_time is not None:
            raise errors.ApiKeyNotFound(f"API key {key!r} of tenant {tenant!r} not found")
        return found

    async def create_key(self, caller: Caller, tenant: str, k: ApiKey) -> tuple[ApiKey, str]:
        require(caller, TENANT_ADMIN)
        scopes = check_scopes(caller, k.scopes)
        self._text("display_name", k.display_name)
        check_rate_limit("rate_limit", k.rate_limit)
        now = now_us()
        check_expire_time(k.expire_time, now)
        key_id = "k" + secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        created = ApiKey(
            key=key_id,
            tenant=tenant,
            display_name=k.display_name,
            scopes=scopes,
            rate_limit=k.rate_limit,
            expire_time=k.expire_time,
            create_time=now,
        )
        async with self._store.transaction(write=True) as tx:
            owner = await self._tenant(tx, caller, tenant)
            if not caller.is_trusted:
                check_within_tenant_limit(k.rate_limit, owner.rate_limit, tenant)
            await tx.record("CREATED", tenant, "", created)
            await tx.insert_key(created, KeySecrets(hash_secret(secret), None, None))
        self._notify()
        log.info("api_key.created", tenant=tenant, key=key_id, scopes=scopes)
        return created, secret

    async def get_key(self, caller: Caller, tenant: str, key: str) -> ApiKey:
        require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=False) as tx:
            return (await self._key(tx, caller, tenant, key))[0]

    async def list_keys(self, caller: Caller, tenant: str) -> list[ApiKey]:
        require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=False) as tx:
            await self._tenant(tx, caller, tenant)
            return await tx.list_keys(tenant)

    async def rotate_key(
        self, caller: Caller, tenant: str, key: str, grace_s: float | None, etag: str
    ) -> tuple[ApiKey, str]:
        require(caller, TENANT_ADMIN)
        grace = self._limits.key_grace_period_s if grace_s is None else grace_s
        limit = self._limits.max_key_rotation_grace_s
        if not (math.isfinite(grace) and 0 <= grace <= limit):
            raise errors.InvalidField(
                f"grace_period must be between 0 and {limit:g} seconds "
                f"(REGISTRY_MAX_KEY_ROTATION_GRACE_S), got {grace:g}s"
            )
        secret = f"{SECRET_PREFIX}_{key}_{secrets.token_urlsafe(32)}"
        async with self._store.transaction(write=True) as tx:
            current, stored = await self._key(tx, caller, tenant, key)
            check_etag("API key", etag, current.revision)
            now = now_us()
            current.rotate_time = now
            current.previous_expire_time = now + int(grace * 1_000_000)
            new = KeySecrets(hash_secret(secret), stored.secret_hash, current.previous_expire_time)
            await tx.record("UPDATED", tenant, "", current)
            await tx.update_key(current, new)
        self._notify()
        log.info("api_key.rotated", tenant=tenant, key=key, grace_s=grace)
        return current, secret

    async def delete_key(self, caller: Caller, tenant: str, key: str) -> None:
        require(caller, TENANT_ADMIN)
        async with self._store.transaction(write=True) as tx:
            current, _ = await self._key(tx, caller, tenant, key)
            current.revoke_time = now_us()
            current.previous_expire_time = None
            await tx.record("DELETED", tenant, "", current)
            await tx.update_key(current, KeySecrets("revoked$", None, None))
        self._notify()
        log.info("api_key.revoked", tenant=tenant, key=key)

    async def verify_key(self, caller: Caller, secret: str) -> tuple[ApiKey, RateLimit, int | None]:
        """(key, effective rate limit, when this secret stops working) or InvalidApiKey."""
        if not caller.is_trusted:
            raise errors.MissingScope("verifying API keys is for the platform administrator")
        parts = secret.split("_", 2)
        if len(parts) != 3 or parts[0] != SECRET_PREFIX or not KEY_RE.match(parts[1]):
            raise errors.InvalidApiKey("invalid API key")
        async with self._store.transaction(write=False) as tx:
            found = await tx.get_key(parts[1])
            tenant = await tx.get_tenant(found[0].tenant) if found else None
        if found is None or tenant is None:
            secret_matches(None, secret)  # same work as a real check
            raise errors.InvalidApiKey("invalid API key")
        key, stored = found
        expires = secret_expiry(key, stored, secret, now_us())
        if ADMIN in key.scopes:  # a key stored before migration 2: never platform-wide
            key.scopes = sorted(
                {TENANT_ADMIN if s == ADMIN else s for s in key.scopes}, key=TENANT_SCOPES.index
            )
        limit = effective_limit(key.rate_limit, tenant.rate_limit)
        return key, limit, expires
