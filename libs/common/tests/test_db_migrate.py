"""modelserve_common.db: the one migration runner (numbered, once under a lock, refuses a newer
schema, all-or-nothing) and driver errors never leaving the database layer, on SQLite and on a
real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelserve_common.db import (
    ConstraintViolation,
    Database,
    Tx,
    open_database,
)
from modelserve_common.errors import ServiceError
from modelserve_common.migrations import Migration, MigrationSet, SchemaTooNew, migrate


async def _seed(tx: Tx) -> None:
    await tx.execute("INSERT INTO things (name) VALUES ('seeded')")


SET = MigrationSet(
    service="testsvc",
    migrations=(
        Migration(1, "things", ("CREATE TABLE things (name TEXT PRIMARY KEY)",)),
        Migration(2, "seed", (), _seed),
    ),
    table="testsvc_migrations",
    lock_key=424242,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/t.db"
    return str(request.getfixturevalue("postgres_url"))


def _open(url: str, tmp_path: Path) -> Database:
    return open_database(url, tmp_path / "unused.db", min_size=0, max_size=2, timeout_s=5.0)


@pytest.fixture
async def db(url: str, tmp_path: Path) -> AsyncIterator[Database]:
    d = _open(url, tmp_path)
    await d.open()
    yield d
    await d.close()


async def _versions(db: Database) -> list[int]:
    async with db.autocommit() as tx:
        return [int(r[0]) for r in await tx.fetch("SELECT version FROM testsvc_migrations ORDER BY version")]


async def test_concurrent_starters_apply_each_migration_once(url: str, tmp_path: Path) -> None:
    dbs = [_open(url, tmp_path) for _ in range(3)]
    for d in dbs:
        await d.open()
    try:
        assert await asyncio.gather(*(migrate(d, SET) for d in dbs)) == [2, 2, 2]
        assert await _versions(dbs[0]) == [1, 2]
        async with dbs[0].autocommit() as tx:
            assert await tx.fetch("SELECT name FROM things") == [("seeded",)]
    finally:
        for d in dbs:
            await d.close()


async def test_newer_schema_is_refused_with_a_clear_error(db: Database) -> None:
    bigger = dataclasses.replace(SET, migrations=(*SET.migrations, Migration(3, "more", ("SELECT 1",))))
    assert await migrate(db, bigger) == 3
    with pytest.raises(SchemaTooNew, match=r"schema version 3 is newer than this testsvc knows \(2\)"):
        await migrate(db, SET)
    assert await _versions(db) == [1, 2, 3]


async def test_failing_migration_changes_nothing(db: Database) -> None:
    broken = dataclasses.replace(
        SET,
        migrations=(*SET.migrations, Migration(3, "dup", ("INSERT INTO things (name) VALUES ('seeded')",))),
    )
    assert await migrate(db, SET) == 2
    with pytest.raises(ConstraintViolation):
        await migrate(db, broken)
    assert await _versions(db) == [1, 2]


async def test_constraint_violation_is_a_service_error_not_a_driver_error(db: Database) -> None:
    await migrate(db, SET)
    with pytest.raises(ConstraintViolation) as exc:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (name) VALUES ('seeded')")
    assert isinstance(exc.value, ServiceError)
    async with db.autocommit() as tx:  # the connection is usable afterwards
        assert await tx.fetchone("SELECT COUNT(*) FROM things") == (1,)


def test_migrations_must_be_numbered_from_one_without_gaps() -> None:
    with pytest.raises(ValueError, match=r"numbered 1, 2, 3…; got \[1, 3\]"):
        dataclasses.replace(SET, migrations=(SET.migrations[0], Migration(3, "gap")))
