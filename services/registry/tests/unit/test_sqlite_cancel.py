"""A transaction holder cancelled while its BEGIN runs in the worker thread must not leave the
shared SQLite connection inside a transaction (the next holder would fail "cannot start a
transaction within a transaction" and the registry would answer INTERNAL)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from modelserve_registry.db import SqliteDatabase


async def test_cancelled_begin_does_not_poison_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    db = SqliteDatabase(path, timeout_s=5)
    await db.open()
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        # another process holds the write lock, so our BEGIN IMMEDIATE waits inside the worker thread
        other.execute("BEGIN IMMEDIATE")

        async def hold() -> None:
            async with db.transaction(write=True):
                await asyncio.sleep(0.05)

        task = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        task.cancel()  # cancelled while BEGIN is running in the thread
        await asyncio.gather(task, return_exceptions=True)
        other.execute("COMMIT")  # BEGIN now completes in the thread, for a holder that is gone
        await asyncio.sleep(0.1)
        async with db.transaction(write=False) as tx:
            assert await tx.fetchone("SELECT 1") == (1,)
        async with db.transaction(write=True) as tx:
            assert await tx.fetchone("SELECT 2") == (2,)
    finally:
        other.close()
        await db.close()
