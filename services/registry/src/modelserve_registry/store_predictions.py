"""SQL of prediction logs and drift references (tables of migration 5). Records are not part of
the change stream: they take no revision and no registry_state lock, so logging never contends
with registry writes. Tensors are stored as JSON (raw bytes in base64)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from modelserve_registry.db import Row, Tx
from modelserve_registry.drift import FeatureReference, LoggedTensor
from modelserve_registry.store import RegistryStore


@dataclass(frozen=True)
class PredictionRecord:
    model: str
    version: int
    request_id: str
    time_us: int
    inputs: tuple[LoggedTensor, ...] = ()
    outputs: tuple[LoggedTensor, ...] = ()
    error: str = ""
    tenant: str = ""
    id: str = ""


@dataclass(frozen=True)
class LogQuery:
    model: str
    version: int  # 0: every version
    start_us: int | None
    end_us: int | None
    after: tuple[int, str] | None  # keyset: (time_us, id) of the last record of the previous page
    limit: int


def _tensors_json(tensors: tuple[LoggedTensor, ...]) -> str:
    return json.dumps(
        [
            {"n": t.name, "d": t.datatype, "s": list(t.shape), "r": base64.b64encode(t.raw).decode()}
            for t in tensors
        ],
        separators=(",", ":"),
    )


def _tensors(text: str) -> tuple[LoggedTensor, ...]:
    return tuple(
        LoggedTensor(name=t["n"], datatype=t["d"], shape=tuple(t["s"]), raw=base64.b64decode(t["r"]))
        for t in json.loads(text)
    )


_COLS = "id, model, version, tenant, request_id, time_us, error, inputs, outputs"


def _record(row: Row) -> PredictionRecord:
    rid, model, version, tenant, request_id, time_us, error, inputs, outputs = row
    return PredictionRecord(
        id=rid,
        model=model,
        version=int(version),
        tenant=tenant,
        request_id=request_id,
        time_us=int(time_us),
        error=error,
        inputs=_tensors(inputs),
        outputs=_tensors(outputs),
    )


class PredictionLogTx:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def model_tenants(self, names: set[str]) -> dict[str, str]:
        """The owner of each named model that exists."""
        out: dict[str, str] = {}
        for name in sorted(names):
            row = await self._tx.fetchone("SELECT tenant FROM models WHERE name = ?", (name,))
            if row is not None:
                out[name] = row[0]
        return out

    async def insert(self, r: PredictionRecord) -> None:
        await self._tx.execute(
            f"INSERT INTO prediction_logs ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.id,
                r.model,
                r.version,
                r.tenant,
                r.request_id,
                r.time_us,
                r.error,
                _tensors_json(r.inputs),
                _tensors_json(r.outputs),
            ),
        )

    async def query(self, q: LogQuery) -> list[PredictionRecord]:
        """Newest first, ties broken by id (descending)."""
        sql = f"SELECT {_COLS} FROM prediction_logs WHERE model = ?"
        params: list[Any] = [q.model]
        if q.version:
            sql += " AND version = ?"
            params.append(q.version)
        if q.start_us is not None:
            sql += " AND time_us >= ?"
            params.append(q.start_us)
        if q.end_us is not None:
            sql += " AND time_us < ?"
            params.append(q.end_us)
        if q.after is not None:
            sql += " AND (time_us < ? OR (time_us = ? AND id < ?))"
            params += [q.after[0], q.after[0], q.after[1]]
        sql += " ORDER BY time_us DESC, id DESC LIMIT ?"
        params.append(q.limit)
        return [_record(r) for r in await self._tx.fetch(sql, params)]

    async def oldest(self, model: str, version: int, limit: int) -> list[PredictionRecord]:
        rows = await self._tx.fetch(
            f"SELECT {_COLS} FROM prediction_logs WHERE model = ? AND version = ? "
            "ORDER BY time_us, id LIMIT ?",
            (model, version, limit),
        )
        return [_record(r) for r in rows]

    async def delete_before(self, time_us: int, limit: int) -> int:
        """Deletes up to ``limit`` records older than ``time_us`` (the oldest first)."""
        return await self._tx.execute(
            "DELETE FROM prediction_logs WHERE id IN "
            "(SELECT id FROM prediction_logs WHERE time_us < ? ORDER BY time_us LIMIT ?)",
            (time_us, limit),
        )

    async def set_reference(
        self, model: str, version: int, features: dict[str, FeatureReference], now_us: int
    ) -> None:
        doc = json.dumps(
            {k: [v.edges, v.shares, v.mean, v.count] for k, v in features.items()}, separators=(",", ":")
        )
        await self._tx.execute(
            "DELETE FROM drift_references WHERE model = ? AND version = ?", (model, version)
        )
        await self._tx.execute(
            "INSERT INTO drift_references (model, version, features, create_time) VALUES (?, ?, ?, ?)",
            (model, version, doc, now_us),
        )

    async def reference(self, model: str, version: int) -> dict[str, FeatureReference] | None:
        row = await self._tx.fetchone(
            "SELECT features FROM drift_references WHERE model = ? AND version = ?", (model, version)
        )
        if row is None:
            return None
        return {
            k: FeatureReference(edges=e, shares=s, mean=m, count=c)
            for k, (e, s, m, c) in json.loads(row[0]).items()
        }

    async def referenced_versions(self) -> list[tuple[str, int]]:
        rows = await self._tx.fetch("SELECT model, version FROM drift_references ORDER BY model, version")
        return [(m, int(v)) for m, v in rows]


class PredictionLogStore:
    """Transactions over the registry's database for prediction logs (an outage raises
    DatabaseUnavailable: UNAVAILABLE; readiness follows at its next check)."""

    def __init__(self, store: RegistryStore) -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[PredictionLogTx]:
        async with self._store.db.transaction(write=write) as tx:
            yield PredictionLogTx(tx)
