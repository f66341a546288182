"""SQL of models (with their tags) and deployments (part of ``StoreTx``, store.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelserve_registry.db import Row
from modelserve_registry.domain import (
    Batching,
    Deployment,
    Model,
    PredictionLogging,
    RateLimit,
    Target,
    from_plain,
    to_plain,
)
from modelserve_registry.store_base import TxBase, dumps

FilterTerm = tuple[str, str, str]  # (field, op, value): op is "=", "!=" or ":"
ORDER_COLUMNS = {"name": "m.name", "create_time": "m.create_time", "update_time": "m.update_time"}


class ModelStatements(TxBase):
    # -- models ----------------------------------------------------------------------------
    _MODEL_COLS = (
        "m.name, m.tenant, m.description, m.latest_version, m.revision, m.create_time, m.update_time, "
        "m.shared"
    )

    async def get_model(self, name: str) -> Model | None:
        row = await self._tx.fetchone(f"SELECT {self._MODEL_COLS} FROM models m WHERE m.name = ?", (name,))
        if row is None:
            return None
        model = _model(row)
        model.tags = await self._tags(name)
        return model

    async def _tags(self, name: str) -> dict[str, str]:
        rows = await self._tx.fetch("SELECT key, value FROM model_tags WHERE model = ? ORDER BY key", (name,))
        return {k: v for k, v in rows}

    async def _write_tags(self, name: str, tags: dict[str, str]) -> None:
        await self._tx.execute("DELETE FROM model_tags WHERE model = ?", (name,))
        for k, v in sorted(tags.items()):
            await self._tx.execute(
                "INSERT INTO model_tags (model, key, value) VALUES (?, ?, ?)", (name, k, v)
            )

    async def count_models(self, tenant: str) -> int:
        row = await self._tx.fetchone("SELECT COUNT(*) FROM models WHERE tenant = ?", (tenant,))
        return int(row[0]) if row else 0

    async def insert_model(self, m: Model) -> None:
        await self._tx.execute(
            "INSERT INTO models (name, tenant, description, latest_version, revision, create_time, "
            "update_time, shared) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.name,
                m.tenant,
                m.description,
                m.latest_version,
                m.revision,
                m.create_time,
                m.update_time,
                int(m.shared),
            ),
        )
        await self._write_tags(m.name, m.tags)

    async def update_model(self, m: Model) -> None:
        await self._tx.execute(
            "UPDATE models SET description = ?, revision = ?, update_time = ?, shared = ? WHERE name = ?",
            (m.description, m.revision, m.update_time, int(m.shared), m.name),
        )
        await self._write_tags(m.name, m.tags)

    async def delete_model(self, name: str) -> None:
        await self._tx.execute("DELETE FROM models WHERE name = ?", (name,))

    async def next_version_number(self, name: str) -> int:
        row = await self._tx.fetchone(
            "UPDATE models SET latest_version = latest_version + 1 WHERE name = ? RETURNING latest_version",
            (name,),
        )
        assert row is not None
        return int(row[0])

    async def list_models(
        self,
        *,
        tenant: str | None,
        terms: Sequence[FilterTerm],
        order: list[tuple[str, bool]],
        offset: int,
        limit: int,
    ) -> list[Model]:
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("(m.tenant = ? OR m.shared = 1)")
            params.append(tenant)
        contains = "instr({}, ?) > 0" if self._dialect == "sqlite" else "strpos({}, ?) > 0"
        for field, op, value in terms:
            if field.startswith("tags."):
                key = field[5:]
                if op == ":":
                    cond = "EXISTS (SELECT 1 FROM model_tags t WHERE t.model = m.name AND t.key = ? AND "
                    cond += contains.format("t.value") + ")"
                    where.append(cond)
                else:
                    neg = "NOT " if op == "!=" else ""
                    where.append(
                        f"{neg}EXISTS (SELECT 1 FROM model_tags t WHERE t.model = m.name AND t.key = ? "
                        "AND t.value = ?)"
                    )
                params.extend([key, value])
                continue
            col = f"m.{field}"
            if op == ":":
                where.append(contains.format(col))
            else:
                where.append(f"{col} {'=' if op == '=' else '<>'} ?")
            params.append(value)
        order_sql = ", ".join(f"{ORDER_COLUMNS[f]} {'DESC' if desc else 'ASC'}" for f, desc in order)
        if "m.name" not in order_sql:
            order_sql += ", m.name ASC"
        sql = f"SELECT {self._MODEL_COLS} FROM models m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order_sql} LIMIT ? OFFSET ?"
        rows = await self._tx.fetch(sql, (*params, limit, offset))
        models = [_model(r) for r in rows]
        for m in models:
            m.tags = await self._tags(m.name)
        return models

    # -- deployments -----------------------------------------------------------------------
    async def get_deployment(self, model: str) -> Deployment | None:
        row = await self._tx.fetchone(
            "SELECT d.model, m.tenant, d.spec, d.revision, d.update_time, m.shared FROM deployments d "
            "JOIN models m ON m.name = d.model WHERE d.model = ?",
            (model,),
        )
        return _deployment(row) if row else None

    async def upsert_deployment(self, d: Deployment) -> None:
        """Writes the deployment; the stored previous one (rollback) is left as it is."""
        spec = _deployment_spec(d)
        await self._tx.execute(
            "INSERT INTO deployments (model, spec, revision, update_time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (model) DO UPDATE SET spec = excluded.spec, revision = excluded.revision, "
            "update_time = excluded.update_time",
            (d.model, spec, d.revision, d.update_time),
        )

    async def set_previous_deployment(self, model: str, previous: Deployment | None) -> None:
        """Remembers the deployment a change replaced (None: forget it), for RollbackDeployment.
        Call after upsert_deployment (the row must exist)."""
        spec = _deployment_spec(previous) if previous is not None else None
        await self._tx.execute("UPDATE deployments SET previous_spec = ? WHERE model = ?", (spec, model))

    async def get_previous_deployment(self, model: str) -> Deployment | None:
        """The deployment the last change replaced (its spec; revision and time are not kept)."""
        row = await self._tx.fetchone(
            "SELECT d.model, m.tenant, d.previous_spec, 0, 0, m.shared FROM deployments d "
            "JOIN models m ON m.name = d.model WHERE d.model = ? AND d.previous_spec IS NOT NULL",
            (model,),
        )
        return _deployment(row) if row else None

    async def list_deployments(self, tenant: str | None) -> list[Deployment]:
        sql = (
            "SELECT d.model, m.tenant, d.spec, d.revision, d.update_time, m.shared FROM deployments d "
            "JOIN models m ON m.name = d.model"
        )
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql += " WHERE m.tenant = ?"
            params = (tenant,)
        rows = await self._tx.fetch(sql + " ORDER BY d.model", params)
        return [_deployment(r) for r in rows]


def _model(row: Row) -> Model:
    name, tenant, description, latest, revision, ctime, utime, shared = row
    return Model(
        name=name,
        tenant=tenant,
        description=description,
        latest_version=int(latest),
        revision=int(revision),
        create_time=int(ctime),
        update_time=int(utime),
        shared=bool(shared),
    )


def _deployment(row: Row) -> Deployment:
    model, tenant, spec, revision, utime, shared = row
    s = json.loads(spec)
    return Deployment(
        model=model,
        tenant=tenant,
        targets=[from_plain(Target, t) for t in s["targets"]],
        batching_overrides=from_plain(Batching, s["batching_overrides"]),
        rate_limit=from_plain(RateLimit, s["rate_limit"]),
        revision=int(revision),
        update_time=int(utime),
        shared=bool(shared),
        prediction_logging=from_plain(PredictionLogging, s.get("prediction_logging", {})),
    )


def _deployment_spec(d: Deployment) -> str:
    return dumps(
        {
            "targets": [to_plain(t) for t in d.targets],
            "batching_overrides": to_plain(d.batching_overrides),
            "rate_limit": to_plain(d.rate_limit),
            "prediction_logging": to_plain(d.prediction_logging),
        }
    )
