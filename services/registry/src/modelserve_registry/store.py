"""All SQL of the registry. ``RegistryStore.transaction(write=...)`` yields a ``StoreTx`` with typed
reads and writes of domain objects; the service holds the rules.

Write transactions are serialized on the one row of ``registry_state`` (PostgreSQL: SELECT … FOR
UPDATE first thing; SQLite: BEGIN IMMEDIATE). Each change takes the next revision from that row and
appends itself to ``changes`` in the same transaction, so revisions are gap-free, commit in revision
order (a Watch reader that sees revision N has seen every revision below it) and a rolled-back
transaction leaves neither rows nor revisions behind. Version numbers come from the model's
``latest_version`` counter under the same lock: unique and gap-free under concurrent creators.

The statements live by concern, combined into ``StoreTx`` here:

- store.py: transactions, revisions and the change log (Watch), time bounds
- store_models.py: models (tags, filtered listing) and deployments
- store_versions.py: versions, aliases and blobs (uploaded artifacts)
- store_access.py: tenants and API keys
- store_predictions.py: prediction logs (outside the change log)"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import Counter

from modelserve_registry.db import Database, DatabaseUnavailable
from modelserve_registry.domain import KINDS, Change, ChangeType, Resource, from_plain, kind_of, to_plain
from modelserve_registry.metrics import WRITES
from modelserve_registry.store_access import AccessStatements
from modelserve_registry.store_base import dumps
from modelserve_registry.store_models import ModelStatements
from modelserve_registry.store_versions import VersionStatements

log = structlog.get_logger(__name__)

COMPACT_EVERY = 1000
MAX_TIME_US = 253_402_300_799_999_999
"""9999-12-31T23:59:59.999999Z, the latest instant a protobuf Timestamp can carry: no time field
beyond it (or before the epoch) is ever committed, so everything stored can be sent back."""

WATCH_SKIPPED = Counter(
    "modelserve_registry_watch_skipped_changes_total",
    "Changes that Watch skipped because they could not be decoded or encoded (logged each time).",
    ["stage"],
)


class UnencodableResource(ValueError):
    """A resource with a time field outside the Timestamp range (a bug upstream: the service
    validates every time at the edge); raised before anything is written."""


def check_encodable(resource: Any) -> None:
    """Raises UnencodableResource when a time field (``*_time``) lies outside 0..MAX_TIME_US."""
    for f in dataclasses.fields(resource):
        if not f.name.endswith("_time"):
            continue
        value = getattr(resource, f.name)
        if value is not None and not 0 <= value <= MAX_TIME_US:
            raise UnencodableResource(
                f"{kind_of(resource)}.{f.name} = {value} is outside the Timestamp range"
            )


def now_us() -> int:
    return int(time.time() * 1_000_000)


class StoreTx(ModelStatements, VersionStatements, AccessStatements):
    """Typed statements inside one transaction (constructor: store_base.TxBase)."""

    # -- revisions and changes -------------------------------------------------------------
    async def lock_for_write(self) -> None:
        """Serializes writers (SQLite already holds its write lock from BEGIN IMMEDIATE)."""
        if self._dialect == "postgresql":
            await self._tx.execute("SELECT revision FROM registry_state WHERE id = 1 FOR UPDATE")

    async def record(self, change_type: ChangeType, tenant: str, model: str, resource: Resource) -> int:
        """Gives ``resource`` the next revision and appends the change; returns the revision.
        A resource that could not be sent back (UnencodableResource) is refused before any write."""
        check_encodable(resource)
        row = await self._tx.fetchone(
            "UPDATE registry_state SET revision = revision + 1 WHERE id = 1 RETURNING revision"
        )
        assert row is not None
        revision = int(row[0])
        resource.revision = revision
        await self._tx.execute(
            "INSERT INTO changes (revision, commit_time, tenant, model, kind, change_type, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (revision, now_us(), tenant, model, kind_of(resource), change_type, dumps(to_plain(resource))),
        )
        WRITES.labels(kind_of(resource), change_type).inc()
        if revision % COMPACT_EVERY == 0 and revision > self._retention:
            horizon = revision - self._retention
            await self._tx.execute("DELETE FROM changes WHERE revision <= ?", (horizon,))
            await self._tx.execute(
                "UPDATE registry_state SET compacted_revision = ? WHERE id = 1", (horizon,)
            )
        return revision

    async def revisions(self) -> tuple[int, int]:
        """(current revision, compacted revision: changes at or below it are gone)."""
        row = await self._tx.fetchone("SELECT revision, compacted_revision FROM registry_state WHERE id = 1")
        assert row is not None
        return int(row[0]), int(row[1])

    async def changes_after(
        self, after: int, *, tenant: str | None, model: str | None, limit: int
    ) -> tuple[list[Change], int]:
        """Changes above ``after`` visible to the filter, in revision order, and the highest
        revision scanned (so a filtered reader still advances)."""
        rows = await self._tx.fetch(
            "SELECT revision, commit_time, tenant, model, kind, change_type, payload FROM changes "
            "WHERE revision > ? ORDER BY revision LIMIT ?",
            (after, limit),
        )
        out: list[Change] = []
        for rev, ctime, ten, mod, kind, ctype, payload in rows:
            if tenant is not None and ten != tenant:
                continue
            if model and mod != model:
                continue
            try:
                resource = from_plain(KINDS[kind], json.loads(payload))
                check_encodable(resource)
            except Exception as exc:  # one bad entry must not stop every Watch at this revision
                WATCH_SKIPPED.labels(stage="decode").inc()
                log.error(
                    "registry.watch_change_skipped", revision=int(rev), kind=kind, error=repr(exc)[:300]
                )
                continue
            out.append(Change(int(rev), ctype, int(ctime), ten, resource))
        scanned = int(rows[-1][0]) if rows else after
        return out, scanned


class RegistryStore:
    """Opens transactions on the registry's database."""

    def __init__(
        self,
        db: Database,
        *,
        change_retention: int = 1_000_000,
        on_outage: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self._retention = change_retention
        self._on_outage = on_outage

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[StoreTx]:
        """A transaction; a DatabaseUnavailable (outage) first calls ``on_outage`` (readiness
        off at once), then propagates (UNAVAILABLE)."""
        try:
            async with self.db.transaction(write=write) as tx:
                stx = StoreTx(tx, self.db.dialect, self._retention)
                if write:
                    await stx.lock_for_write()
                yield stx
        except DatabaseUnavailable:
            if self._on_outage is not None:
                await self._on_outage()
            raise

    async def ping(self) -> None:
        async with self.db.transaction(write=False) as tx:
            await tx.fetchone("SELECT 1")
