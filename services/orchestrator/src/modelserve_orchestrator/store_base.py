"""What the orchestrator's store modules share: the database, the parsed-pipeline cache and the
tenant filter. OrchestratorStore (store.py) combines the pipeline, execution and delivery stores."""

from __future__ import annotations

import json
from typing import Any

from modelserve_orchestrator.db import Database
from modelserve_orchestrator.domain import Pipeline, pipeline_from_dict

DEFAULT_TENANT = "default"
_PIPELINE_CACHE_SIZE = 256


def tenant_filter(tenant: str | None, column: str = "tenant") -> tuple[str, list[Any]]:
    """SQL (with a leading AND) restricting rows to ``tenant``; nothing when None (sees all)."""
    return ("", []) if tenant is None else (f" AND {column} = ?", [tenant])


class StoreBase:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Parsed pipeline versions keyed by what the database returned (a version's spec never
        # changes; a deleted and re-created name gets a new create_time), so a cache hit is exact.
        self._parsed: dict[tuple[str, int, float], Pipeline] = {}

    def _pipeline(self, spec: str, version: int, create_time: float) -> Pipeline:
        key = (spec, version, create_time)
        found = self._parsed.get(key)
        if found is None:
            if len(self._parsed) >= _PIPELINE_CACHE_SIZE:
                self._parsed.pop(next(iter(self._parsed)))
            found = self._parsed[key] = pipeline_from_dict(json.loads(spec), version, create_time)
        return found

    async def ping(self) -> None:
        async with self.db.autocommit() as tx:
            await tx.fetchone("SELECT 1")
