"""The one schema-migration runner of the services that keep a system of record: each service
keeps only its list of numbered migrations (a ``MigrationSet``) in its own ``migrations.py``, and
``migrate`` applies the pending ones on a ``modelserve_common.db`` database."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from modelserve_common.db import Database, Tx
from modelserve_common.errors import FailedPrecondition

log = structlog.get_logger(__name__)


class SchemaTooNew(FailedPrecondition):
    """The database was migrated by a newer release of the service than this one."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema step: its statements, then ``run`` (a data step with portable SQL), in
    the migration transaction. Never edit a released migration; append a new one."""

    number: int
    name: str
    statements: tuple[str, ...] = ()
    run: Callable[[Tx], Awaitable[None]] | None = None


@dataclass(frozen=True)
class MigrationSet:
    """A service's migrations and where their applied versions are recorded.

    ``table`` (version, ``name_column``, applied_at of ``applied_at_type``) is the service's own
    (services may share a database); ``lock_key`` is its PostgreSQL advisory lock; ``applied_at``
    gives the value recorded; ``service`` prefixes the log events (``<service>.migration_applied``)
    and names the service in the SchemaTooNew message."""

    service: str
    migrations: tuple[Migration, ...]
    table: str
    lock_key: int
    name_column: str = "name"
    applied_at_type: str = "BIGINT"
    applied_at: Callable[[], float | int] = lambda: int(time.time() * 1e6)

    def __post_init__(self) -> None:
        numbers = [m.number for m in self.migrations]
        if not numbers or numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"{self.service} migrations must be numbered 1, 2, 3…; got {numbers}")

    @property
    def latest(self) -> int:
        return self.migrations[-1].number


async def migrate(db: Database, mset: MigrationSet) -> int:
    """Applies ``mset``'s pending migrations in one transaction and returns the schema version.

    Concurrent starters (replicas, the migration Job) serialise on a PostgreSQL transaction-scoped
    advisory lock, or on SQLite's write lock (``BEGIN IMMEDIATE``: in WAL mode as exclusive as
    ``BEGIN EXCLUSIVE`` towards other writers), so each migration is applied once, and one that
    fails leaves the version unchanged. A database already migrated past what this code knows
    raises SchemaTooNew (FAILED_PRECONDITION) and is not touched."""
    known = mset.latest
    async with db.transaction(write=True) as tx:
        if db.dialect == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (mset.lock_key,))
        await tx.execute(
            f"CREATE TABLE IF NOT EXISTS {mset.table} (version INTEGER PRIMARY KEY, "
            f"{mset.name_column} TEXT NOT NULL, applied_at {mset.applied_at_type} NOT NULL)"
        )
        row = await tx.fetchone(f"SELECT COALESCE(MAX(version), 0) FROM {mset.table}")
        current = int(row[0]) if row else 0
        if current > known:
            raise SchemaTooNew(
                f"database schema version {current} is newer than this {mset.service} knows "
                f"({known}): upgrade the {mset.service}"
            )
        for m in mset.migrations:
            if m.number <= current:
                continue
            for stmt in m.statements:
                await tx.execute(stmt)
            if m.run is not None:
                await m.run(tx)
            await tx.execute(
                f"INSERT INTO {mset.table} (version, {mset.name_column}, applied_at) VALUES (?, ?, ?)",
                (m.number, m.name, mset.applied_at()),
            )
            log.info(f"{mset.service}.migration_applied", version=m.number, migration=m.name)
    return max(current, known)
