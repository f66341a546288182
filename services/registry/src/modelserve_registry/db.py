"""The two databases the registry runs on, behind one small interface: PostgreSQL through psycopg 3
(async, connection pool) and SQLite (stdlib sqlite3 on one connection, in one worker thread).

SQL is written once with ``?`` placeholders and portable types (TEXT, BIGINT, INTEGER); the
PostgreSQL side rewrites the placeholders. A lost or unreachable database raises
``DatabaseUnavailable`` (UNAVAILABLE), never INTERNAL; every transaction commits whole or not at all.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from modelserve_common.errors import Unavailable

Row = tuple[Any, ...]
T = TypeVar("T")


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached or dropped the connection mid-transaction."""


class Tx(Protocol):
    """One open transaction."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Database(Protocol):
    """A database the registry can run on."""

    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self, *, write: bool) -> Any:
        """An async context manager yielding a Tx; commits on success, rolls back on error."""
        ...


class _PgTx:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(sql.replace("?", "%s"), params)
        return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = await self._conn.execute(sql.replace("?", "%s"), params)
        return await cur.fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(sql.replace("?", "%s"), params)
        return cur.rowcount


class PostgresDatabase:
    """PostgreSQL through a psycopg 3 async pool; connections are checked before each use."""

    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int, max_size: int, timeout_s: float) -> None:
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=timeout_s,
            kwargs={"connect_timeout": max(1, math.ceil(timeout_s))},
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[Tx]:
        try:
            async with self._pool.connection() as conn:
                async with conn.transaction():
                    yield _PgTx(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc


class _SqliteTx:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._db.run(lambda c: c.execute(sql, tuple(params)).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = await self._db.run(lambda c: c.execute(sql, tuple(params)).fetchone())
        return row

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._db.run(lambda c: c.execute(sql, tuple(params)).rowcount)


_SQLITE_OUTAGE = ("locked", "busy", "unable to open", "disk I/O", "readonly", "disk is full")


def _begin(conn: sqlite3.Connection, write: bool) -> None:
    # Holding the transaction lock means nobody else has a transaction open: one still open is the
    # leftover of a holder cancelled between BEGIN and its yield (the executor ran BEGIN anyway).
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")


class SqliteDatabase:
    """SQLite (WAL, foreign keys on) on one connection used by one worker thread; transactions
    take an asyncio lock, writers use BEGIN IMMEDIATE so other processes wait on the file lock."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, timeout_s: float) -> None:
        self._path = path
        self._timeout = timeout_s
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self._path), timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._executor is not None and self._conn is not None, "database not open"
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc) for word in _SQLITE_OUTAGE):
                raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
            raise

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="registry-sqlite")
            try:
                self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
            except sqlite3.Error as exc:
                raise DatabaseUnavailable(f"cannot open {self._path}: {exc}") from exc

    async def close(self) -> None:
        if self._executor is not None and self._conn is not None:
            conn = self._conn
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=True)
        self._executor = None
        self._conn = None

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[Tx]:
        try:
            async with asyncio.timeout(self._timeout):  # not wait_for: on 3.11 it can swallow a cancel
                await self._lock.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("database busy: no transaction slot within the timeout") from None
        try:
            await self.run(lambda c: _begin(c, write))
            try:
                yield _SqliteTx(self)
            except BaseException:
                await asyncio.shield(self.run(lambda c: c.execute("ROLLBACK")))
                raise
            await self.run(lambda c: c.execute("COMMIT"))
        finally:
            self._lock.release()


def open_database(
    url: str | None, data_dir: Path, *, min_size: int, max_size: int, timeout_s: float
) -> Database:
    """The database for ``url``: postgresql://…, sqlite:///relative.db or sqlite:////absolute.db;
    None means SQLite under data_dir."""
    if not url:
        return SqliteDatabase(data_dir / "registry.db", timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, min_size=min_size, max_size=max_size, timeout_s=timeout_s)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")), timeout_s=timeout_s)
    raise ValueError(
        f"unsupported database URL scheme: expected postgresql:// or sqlite:///, got {url.split(':')[0]!r}"
    )
