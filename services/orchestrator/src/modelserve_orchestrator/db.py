"""The orchestrator's database: PostgreSQL or SQLite through modelserve_common.db (shared with the
registry); SQLite with synchronous=NORMAL (WAL keeps it crash-safe)."""

from __future__ import annotations

from pathlib import Path

from modelserve_common.db import Database, DatabaseUnavailable, Row, SqliteDatabase, Tx
from modelserve_common.db import open_database as _open_database

__all__ = ["Database", "DatabaseUnavailable", "Row", "SqliteDatabase", "Tx", "open_database"]

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL")


def open_database(
    url: str | None, data_dir: Path, *, min_size: int, max_size: int, timeout_s: float
) -> Database:
    """The database for ``url``; None means SQLite at ``data_dir/orchestrator.db``."""
    return _open_database(
        url,
        data_dir / "orchestrator.db",
        min_size=min_size,
        max_size=max_size,
        timeout_s=timeout_s,
        sqlite_pragmas=SQLITE_PRAGMAS,
    )
