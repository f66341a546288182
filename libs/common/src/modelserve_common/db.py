"""PostgreSQL (psycopg 3 async pool) or SQLite (stdlib, one connection in one worker thread) behind
one small interface, for the services that keep a system of record (registry, orchestrator).

SQL is written once with ``?`` placeholders and portable types; the PostgreSQL side rewrites the
placeholders. A lost or unreachable database raises ``DatabaseUnavailable`` (UNAVAILABLE), never
INTERNAL; a broken constraint raises ``ConstraintViolation``; a transaction commits whole or not at
all. No driver exception leaves this module. psycopg is imported only here and only when PostgreSQL
is used, so services without a database do not need it (install ``psycopg[binary,pool]``).

The schema-migration runner (``migrate``, ``MigrationSet``) is in migrations.py."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

from modelserve_common.errors import Internal, Unavailable
from modelserve_common.metrics import DB_ERRORS, DB_OPERATION_SECONDS, DB_POOL_IN_USE, DB_POOL_MAX

if TYPE_CHECKING:
    import psycopg

Row = tuple[Any, ...]
T = TypeVar("T")


log = structlog.get_logger(__name__)


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached or dropped the connection mid-transaction."""


class ConstraintViolation(Internal):
    """A statement broke a uniqueness, foreign-key or other constraint (the driver's
    IntegrityError, whichever the driver). The transaction it ran in is rolled back; a store that
    expects it (a concurrent insert of the same key) turns it into its own error."""


class Tx(Protocol):
    """An open transaction (or an autocommit connection)."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Database(Protocol):
    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[Tx]:
        """Commits on success, rolls back on error; ``write=False`` for read-only snapshots."""
        ...

    def autocommit(self) -> AbstractAsyncContextManager[Tx]:
        """A connection on which every statement commits on its own (no BEGIN/COMMIT round
        trips): for single-statement writes and for reads that need no snapshot."""
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
    """A psycopg 3 pool of autocommit connections: ``transaction()`` wraps BEGIN/COMMIT around a
    block, ``autocommit()`` runs single statements without them. A connection is checked (one
    round trip) when it leaves the pool only if it sat unused for ``check_idle_s``: a busy pool
    pays nothing, and a connection cut by a database restart is still noticed before use."""

    dialect = "postgresql"

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int, timeout_s: float, check_idle_s: float = 1.0
    ) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        self._lost = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
        self._integrity = psycopg.IntegrityError
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._check_idle_s = check_idle_s
        self._check_connection = AsyncConnectionPool.check_connection
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            check=self._check,
            reconnect_timeout=timeout_s,
            kwargs={"connect_timeout": max(1, math.ceil(timeout_s)), "autocommit": True},
        )

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        last = self._last_used.get(conn)
        if last is None or time.monotonic() - last > self._check_idle_s:
            await self._check_connection(conn)

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; the driver's outage and constraint errors become ours."""
        started = time.perf_counter()
        DB_POOL_MAX.set(self._pool.max_size)
        try:
            async with self._pool.connection() as conn:
                DB_POOL_IN_USE.inc()
                try:
                    yield conn
                finally:
                    DB_POOL_IN_USE.dec()
                self._last_used[conn] = time.monotonic()
        except self._lost as exc:
            DB_ERRORS.labels(self.dialect, "unavailable").inc()
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except self._integrity as exc:
            DB_ERRORS.labels(self.dialect, "constraint").inc()
            raise ConstraintViolation(f"constraint violated: {type(exc).__name__}") from exc
        finally:
            DB_OPERATION_SECONDS.labels(self.dialect).observe(time.perf_counter() - started)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Tx]:
        async with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Tx]:
        async with self._connection() as conn:
            yield _PgTx(conn)


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
    """SQLite (WAL) on one connection used by one worker thread; transactions take an asyncio
    lock, writers use BEGIN IMMEDIATE so other processes wait on the file lock. Outage-like errors
    (locked, busy, I/O) are DatabaseUnavailable; other SQL errors propagate (INTERNAL)."""

    dialect = "sqlite"

    def __init__(
        self, path: Path, *, timeout_s: float, pragmas: Sequence[str] = ("journal_mode=WAL",)
    ) -> None:
        self._path = path
        self._timeout = timeout_s
        self._pragmas = tuple(pragmas)
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self._path), timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        for pragma in self._pragmas:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._executor is not None and self._conn is not None, "database not open"
        conn = self._conn
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc) for word in _SQLITE_OUTAGE):
                DB_ERRORS.labels(self.dialect, "unavailable").inc()
                raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
            raise
        except sqlite3.IntegrityError as exc:
            DB_ERRORS.labels(self.dialect, "constraint").inc()
            raise ConstraintViolation(f"constraint violated: {exc}") from exc
        finally:
            DB_OPERATION_SECONDS.labels(self.dialect).observe(time.perf_counter() - started)

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
            try:
                self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
            except sqlite3.Error as exc:
                raise DatabaseUnavailable(f"cannot open {self._path}: {exc}") from exc

    async def close(self) -> None:
        if self._executor is not None and self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._executor.shutdown(wait=True)
        self._executor = None
        self._conn = None

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):  # not wait_for: on 3.11 it can swallow a cancel
                await self._lock.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("database busy: no transaction slot within the timeout") from None
        try:
            yield
        finally:
            self._lock.release()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Tx]:
        async with self._locked():
            await self.run(lambda c: _begin(c, write))
            try:
                yield _SqliteTx(self)
            except BaseException:
                await asyncio.shield(self.run(lambda c: c.execute("ROLLBACK")))
                raise
            await self.run(lambda c: c.execute("COMMIT"))

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Tx]:
        async with self._locked():
            yield _SqliteTx(self)


def database_url_problem(url: str) -> str | None:
    """What is wrong with a database URL (never echoing it: it may hold a password), or None."""
    if url.startswith("sqlite:///"):
        return None if url.removeprefix("sqlite:///") else "sqlite:/// needs a file path"
    if not url.startswith(("postgresql://", "postgres://")):
        scheme = url.split(":", 1)[0] if ":" in url else url[:20]
        return f"expected postgresql://… or sqlite:///…, got scheme {scheme!r}"
    from psycopg import Error as PsycopgError  # only when PostgreSQL is configured
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except PsycopgError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(url, "<url>")
        return f"not a valid PostgreSQL URL: {first}"
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            return f"not a valid PostgreSQL URL: port {port!r} is not a number from 1 to 65535"
    return None


def open_database(
    url: str | None,
    default_path: Path,
    *,
    max_size: int,
    timeout_s: float,
    min_size: int = 1,
    sqlite_pragmas: Sequence[str] = ("journal_mode=WAL",),
) -> Database:
    """postgresql://…, sqlite:///relative.db or sqlite:////absolute.db; None: SQLite at default_path."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, min_size=min_size, max_size=max_size, timeout_s=timeout_s)
    if url and not url.startswith("sqlite:///"):
        scheme = url.split(":")[0]
        raise ValueError(
            f"unsupported database URL scheme: expected postgresql:// or sqlite:///, got {scheme!r}"
        )
    path = Path(url.removeprefix("sqlite:///")) if url else default_path
    return SqliteDatabase(path, timeout_s=timeout_s, pragmas=sqlite_pragmas)
