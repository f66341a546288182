"""SQL of tenants and API keys (part of ``StoreTx``, store.py)."""

from __future__ import annotations

import json
from typing import Any

from modelserve_registry.db import Row
from modelserve_registry.domain import ApiKey, KeySecrets, RateLimit, Tenant, from_plain, to_plain
from modelserve_registry.store_base import TxBase, dumps


class AccessStatements(TxBase):
    # -- tenants ---------------------------------------------------------------------------
    _TENANT_COLS = (
        "name, display_name, rate_limit, max_models, revision, create_time, code_execution_allowed, "
        "storage_quota_bytes"
    )

    async def get_tenant(self, name: str) -> Tenant | None:
        row = await self._tx.fetchone(
            f"SELECT {self._TENANT_COLS} FROM tenants WHERE name = ?",
            (name,),
        )
        return _tenant(row) if row else None

    async def insert_tenant(self, t: Tenant) -> None:
        await self._tx.execute(
            f"INSERT INTO tenants ({self._TENANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.name,
                t.display_name,
                dumps(to_plain(t.rate_limit)),
                t.max_models,
                t.revision,
                t.create_time,
                int(t.code_execution_allowed),
                t.storage_quota_bytes,
            ),
        )

    async def update_tenant(self, t: Tenant) -> None:
        await self._tx.execute(
            "UPDATE tenants SET display_name = ?, rate_limit = ?, max_models = ?, "
            "code_execution_allowed = ?, storage_quota_bytes = ?, revision = ? WHERE name = ?",
            (
                t.display_name,
                dumps(to_plain(t.rate_limit)),
                t.max_models,
                int(t.code_execution_allowed),
                t.storage_quota_bytes,
                t.revision,
                t.name,
            ),
        )

    async def list_tenants(self, offset: int, limit: int) -> list[Tenant]:
        rows = await self._tx.fetch(
            f"SELECT {self._TENANT_COLS} FROM tenants ORDER BY name LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_tenant(r) for r in rows]

    # -- API keys --------------------------------------------------------------------------
    _KEY_COLS = (
        "key, tenant, display_name, scopes, rate_limit, expire_time, create_time, rotate_time, "
        "previous_expire_time, revoke_time, revision, secret_hash, previous_hash"
    )

    async def get_key(self, key: str) -> tuple[ApiKey, KeySecrets] | None:
        row = await self._tx.fetchone(f"SELECT {self._KEY_COLS} FROM api_keys WHERE key = ?", (key,))
        return _key(row) if row else None

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        rows = await self._tx.fetch(
            f"SELECT {self._KEY_COLS} FROM api_keys WHERE tenant = ? AND revoke_time IS NULL ORDER BY key",
            (tenant,),
        )
        return [_key(r)[0] for r in rows]

    async def insert_key(self, k: ApiKey, s: KeySecrets) -> None:
        await self._tx.execute(
            f"INSERT INTO api_keys ({self._KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                k.key,
                k.tenant,
                k.display_name,
                dumps(k.scopes),
                dumps(to_plain(k.rate_limit)),
                k.expire_time,
                k.create_time,
                k.rotate_time,
                s.previous_expire_time,
                k.revoke_time,
                k.revision,
                s.secret_hash,
                s.previous_hash,
            ),
        )

    async def update_key(self, k: ApiKey, s: KeySecrets) -> None:
        await self._tx.execute(
            "UPDATE api_keys SET rotate_time = ?, previous_expire_time = ?, revoke_time = ?, revision = ?, "
            "secret_hash = ?, previous_hash = ? WHERE key = ?",
            (
                k.rotate_time,
                s.previous_expire_time,
                k.revoke_time,
                k.revision,
                s.secret_hash,
                s.previous_hash,
                k.key,
            ),
        )


def _tenant(row: Row) -> Tenant:
    name, display, rate, max_models, revision, ctime, code, quota = row
    return Tenant(
        storage_quota_bytes=int(quota),
        name=name,
        display_name=display,
        rate_limit=from_plain(RateLimit, json.loads(rate)),
        max_models=int(max_models),
        revision=int(revision),
        create_time=int(ctime),
        code_execution_allowed=bool(code),
    )


def _opt(v: Any) -> int | None:
    return None if v is None else int(v)


def _key(row: Row) -> tuple[ApiKey, KeySecrets]:
    (
        key,
        tenant,
        display,
        scopes,
        rate,
        expire,
        ctime,
        rtime,
        prev_expire,
        revoke,
        revision,
        shash,
        phash,
    ) = row
    k = ApiKey(
        key=key,
        tenant=tenant,
        display_name=display,
        scopes=json.loads(scopes),
        rate_limit=from_plain(RateLimit, json.loads(rate)),
        expire_time=_opt(expire),
        create_time=int(ctime),
        rotate_time=_opt(rtime),
        previous_expire_time=_opt(prev_expire),
        revoke_time=_opt(revoke),
        revision=int(revision),
    )
    return k, KeySecrets(secret_hash=shash, previous_hash=phash, previous_expire_time=_opt(prev_expire))
