"""Executions: created (idempotent per tenant), leased by one worker at a time (claim, renew,
release), finished once with their node results and webhook deliveries, listed and reconciled."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelserve_orchestrator import tensors
from modelserve_orchestrator.db import Tx
from modelserve_orchestrator.domain import (
    Execution,
    ExecutionState,
    NodeResult,
    NodeTrace,
    Pipeline,
    Webhook,
    trace_from_dict,
    trace_to_dict,
    webhook_from_dict,
)
from modelserve_orchestrator.errors import IdempotencyKeyReused
from modelserve_orchestrator.store_base import DEFAULT_TENANT, StoreBase, tenant_filter
from modelserve_orchestrator.store_deliveries import NewDelivery, insert_deliveries

# Idempotency keys are unique per tenant: a tenant other than 'default' stores its keys behind
# its name and this separator (a key itself must be printable, so it cannot contain it).
_KEY_SEP = "\x1f"


def _stored_key(tenant: str, key: str) -> str:
    return key if tenant == DEFAULT_TENANT else f"{tenant}{_KEY_SEP}{key}"


TERMINAL = (int(ExecutionState.SUCCEEDED), int(ExecutionState.FAILED), int(ExecutionState.CANCELLED))

_EXEC_COLS = (
    "id, pipeline, pipeline_version, state, parameters, webhook, idempotency_key, outputs, missing, "
    "error, attempts, create_time, start_time, end_time, tenant"
)


def _webhook_json(w: Webhook | None) -> str | None:
    if w is None:
        return None
    return json.dumps({"url": w.url, "secrets": list(w.secrets), "events": [int(e) for e in w.events]})


Completed = tuple[NodeResult, float]  # a node result and when it completed (epoch seconds)


@dataclass(frozen=True)
class ClaimedExecution:
    """What a worker needs to run an execution it just leased (read with the lease, at once)."""

    execution: Execution
    inputs: dict[str, Any]
    done: dict[str, NodeResult]
    pipeline: Pipeline | None
    trace_context: dict[str, str] = field(default_factory=dict)
    """The creating request's W3C trace context (empty when it was not traced)."""


# The execution's pipeline version, only while it is still its tenant's (a name deleted and taken
# by another tenant is not: its executions find no pipeline); a trusted caller's execution
# (tenant PLATFORM_OWNER = '') may run any tenant's pipeline, as it could when it was created.
_OWN_PIPELINE = (
    "p.name = orch_executions.pipeline AND p.version = orch_executions.pipeline_version "
    "AND (p.tenant = orch_executions.tenant OR orch_executions.tenant = '')"
)


class ExecutionStore(StoreBase):
    async def create_execution(
        self,
        e: Execution,
        inputs_text: str,
        request_hash: str,
        *,
        tenant: str = DEFAULT_TENANT,
        trace_context: Mapping[str, str] | None = None,
    ) -> tuple[Execution, bool]:
        """Inserts the execution, owned by ``tenant``; with an idempotency key that tenant already
        used, returns that execution (replayed=True) when the request is the same, ALREADY_EXISTS
        when it differs (keys are per tenant)."""
        key = _stored_key(tenant, e.idempotency_key) if e.idempotency_key else None
        # enqueued_at = create_time: the caller enqueues right after; if it dies first, the
        # sweeper finds the execution once enqueued_at is older than the visibility timeout.
        async with self.db.autocommit() as tx:
            inserted = await tx.execute(
                "INSERT INTO orch_executions (id, pipeline, pipeline_version, state, inputs, parameters, "
                "webhook, idempotency_key, request_hash, create_time, enqueued_at, tenant, trace_context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    e.id,
                    e.pipeline,
                    e.pipeline_version,
                    int(e.state),
                    inputs_text,
                    json.dumps(e.parameters),
                    _webhook_json(e.webhook),
                    key,
                    request_hash,
                    e.create_time,
                    e.create_time,
                    tenant,
                    json.dumps(dict(trace_context)) if trace_context else "",
                ),
            )
            if inserted:
                return e, False
            row = await tx.fetchone(
                "SELECT id, request_hash FROM orch_executions WHERE idempotency_key = ?", (key,)
            )
        assert row is not None
        if row[1] != request_hash:
            raise IdempotencyKeyReused(
                f"idempotency key {e.idempotency_key!r} was used for a different request (execution {row[0]})"
            )
        found = await self.get_execution(str(row[0]))
        assert found is not None
        return found, True

    async def mark_enqueued(self, execution_id: str, now: float) -> None:
        async with self.db.autocommit() as tx:
            await tx.execute("UPDATE orch_executions SET enqueued_at = ? WHERE id = ?", (now, execution_id))

    async def claim(
        self, execution_id: str, owner: str, lease_until: float, now: float
    ) -> ClaimedExecution | None:
        """Takes the lease of a non-terminal execution nobody holds (or whose lease expired) and
        returns what running it needs: the execution, its inputs, the node results already
        recorded (only an execution leased before can have any) and its pipeline version (None
        when deleted). None when the lease is not ours."""
        async with self.db.autocommit() as tx:
            row = await tx.fetchone(
                "UPDATE orch_executions SET state = ?, lease_owner = ?, lease_until = ?, "
                "attempts = attempts + 1, start_time = COALESCE(start_time, ?) "
                "WHERE id = ? AND state IN (?, ?) "
                "AND (lease_owner IS NULL OR lease_until < ? OR lease_owner = ?) "
                f"RETURNING {_EXEC_COLS}, inputs, "
                f"(SELECT spec FROM orch_pipelines p WHERE {_OWN_PIPELINE}), "
                f"(SELECT create_time FROM orch_pipelines p WHERE {_OWN_PIPELINE}), trace_context",
                (
                    int(ExecutionState.RUNNING),
                    owner,
                    lease_until,
                    now,
                    execution_id,
                    int(ExecutionState.QUEUED),
                    int(ExecutionState.RUNNING),
                    now,
                    owner,
                ),
            )
            if row is None:
                return None
            ex = _execution(row[:-4], [], False)
            done: dict[str, NodeResult] = {}
            if ex.attempts > 1:
                rows = await tx.fetch(
                    "SELECT node, trace, outputs FROM orch_node_results WHERE execution_id = ?",
                    (execution_id,),
                )
                done = {
                    r[0]: NodeResult(trace_from_dict(json.loads(r[1])), tensors.loads(r[2])) for r in rows
                }
        spec, spec_time, trace_context = row[-3], row[-2], row[-1]
        pipeline = self._pipeline(spec, ex.pipeline_version, float(spec_time)) if spec is not None else None
        carrier = json.loads(trace_context) if trace_context else {}
        return ClaimedExecution(ex, tensors.loads(row[-4]), done, pipeline, carrier)

    async def renew(self, execution_id: str, owner: str, lease_until: float) -> bool:
        """Extends our lease; False when it is lost (taken over, cancelled or finished)."""
        async with self.db.autocommit() as tx:
            n = await tx.execute(
                "UPDATE orch_executions SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = ?",
                (lease_until, execution_id, owner, int(ExecutionState.RUNNING)),
            )
        return n == 1

    async def release(self, execution_id: str, owner: str, nodes: Sequence[Completed], now: float) -> bool:
        """Gives our lease back (the execution is QUEUED again, for any replica to take at once)
        and records the given node results in the same transaction; False when the lease was
        no longer ours (taken over, cancelled or finished)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE orch_executions SET state = ?, lease_owner = NULL, lease_until = NULL, "
                "enqueued_at = ? WHERE id = ? AND lease_owner = ? AND state = ?",
                (int(ExecutionState.QUEUED), now, execution_id, owner, int(ExecutionState.RUNNING)),
            )
            if n != 1:
                return False
            await _insert_nodes(tx, execution_id, nodes)
        return True

    async def record_nodes(self, execution_id: str, results: Sequence[Completed]) -> None:
        """Records node results with their completion times (one statement; a result already
        recorded is kept)."""
        if results:
            async with self.db.autocommit() as tx:
                await _insert_nodes(tx, execution_id, results)

    async def finish(
        self,
        execution_id: str,
        state: ExecutionState,
        *,
        outputs: Mapping[str, Any],
        missing: Sequence[str],
        error: str,
        now: float,
        owner: str | None,
        deliveries: Sequence[NewDelivery],
        nodes: Sequence[Completed] = (),
    ) -> bool:
        """Moves a non-terminal execution to its one terminal state and records its webhook
        deliveries and the node results not yet recorded in the same transaction; False when
        it was already terminal (or, with ``owner``, when the lease is no longer ours)."""
        sql = (
            "UPDATE orch_executions SET state = ?, outputs = ?, missing = ?, error = ?, end_time = ?, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ? AND state NOT IN (?, ?, ?)"
        )
        params: list[Any] = [
            int(state),
            tensors.dumps(outputs),
            json.dumps(list(missing)),
            error,
            now,
            execution_id,
            *TERMINAL,
        ]
        if owner is not None:
            sql += " AND lease_owner = ?"
            params.append(owner)
        async with self.db.transaction() as tx:
            if await tx.execute(sql, params) != 1:
                return False
            await _insert_nodes(tx, execution_id, nodes)
            await insert_deliveries(tx, execution_id, deliveries, now)
        return True

    async def execution_state(self, execution_id: str) -> ExecutionState | None:
        async with self.db.autocommit() as tx:
            row = await tx.fetchone("SELECT state FROM orch_executions WHERE id = ?", (execution_id,))
        return ExecutionState(row[0]) if row else None

    async def get_execution(
        self, execution_id: str, *, with_outputs: bool = True, tenant: str | None = None
    ) -> Execution | None:
        """The execution; None when missing or not ``tenant``'s (None: any tenant's)."""
        cond, extra = tenant_filter(tenant)
        async with self.db.autocommit() as tx:
            row = await tx.fetchone(
                f"SELECT {_EXEC_COLS} FROM orch_executions WHERE id = ?{cond}", (execution_id, *extra)
            )
            if row is None:
                return None
            traces = await tx.fetch(
                "SELECT trace FROM orch_node_results WHERE execution_id = ? ORDER BY completed_at, node",
                (execution_id,),
            )
        return _execution(row, [r[0] for r in traces], with_outputs)

    async def list_executions(
        self,
        pipeline: str,
        state: ExecutionState,
        after: tuple[float, str] | None,
        limit: int,
        *,
        tenant: str | None = None,
    ) -> list[Execution]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if pipeline:
            where.append("pipeline = ?")
            params.append(pipeline)
        if state != ExecutionState.UNSPECIFIED:
            where.append("state = ?")
            params.append(int(state))
        if after is not None:
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        async with self.db.autocommit() as tx:
            rows = await tx.fetch(
                f"SELECT {_EXEC_COLS} FROM orch_executions WHERE {' AND '.join(where)} "
                "ORDER BY create_time DESC, id DESC LIMIT ?",
                [*params, limit],
            )
        return [_execution(r, [], False) for r in rows]

    async def abandoned(self, now: float, enqueued_before: float, limit: int) -> list[str]:
        """Non-terminal executions nobody holds a live lease on and that were not (re)queued or
        checked since ``enqueued_before``, the longest-waiting first: never queued (failure
        between commit and enqueue), lost with Redis, or lost by a dead replica."""
        async with self.db.autocommit() as tx:
            rows = await tx.fetch(
                "SELECT id FROM orch_executions WHERE state IN (?, ?) "
                "AND (lease_until IS NULL OR lease_until < ?) "
                "AND (enqueued_at IS NULL OR enqueued_at < ?) AND create_time < ? "
                "ORDER BY COALESCE(enqueued_at, create_time), id LIMIT ?",
                (
                    int(ExecutionState.QUEUED),
                    int(ExecutionState.RUNNING),
                    now,
                    enqueued_before,
                    enqueued_before,
                    limit,
                ),
            )
        return [str(r[0]) for r in rows]

    async def mark_checked(self, execution_ids: Sequence[str], now: float) -> None:
        """Records that these executions were found in the queue (sets enqueued_at), so that the
        next reconcile pass examines others first."""
        if not execution_ids:
            return
        marks = ", ".join("?" * len(execution_ids))
        async with self.db.autocommit() as tx:
            await tx.execute(
                f"UPDATE orch_executions SET enqueued_at = ? WHERE id IN ({marks})",
                [now, *execution_ids],
            )


async def _insert_nodes(tx: Tx, execution_id: str, results: Sequence[Completed]) -> None:
    if not results:
        return
    rows: list[Any] = []
    for r, at in results:
        rows += [
            execution_id,
            r.trace.node,
            json.dumps(trace_to_dict(r.trace)),
            tensors.dumps(r.outputs),
            at,
        ]
    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(results))
    await tx.execute(
        "INSERT INTO orch_node_results (execution_id, node, trace, outputs, completed_at) "
        f"VALUES {values} ON CONFLICT (execution_id, node) DO NOTHING",
        rows,
    )


def _execution(row: Sequence[Any], traces: list[str], with_outputs: bool) -> Execution:
    (
        eid,
        pipeline,
        version,
        state,
        params,
        webhook,
        key,
        outputs,
        missing,
        error,
        attempts,
        ct,
        st,
        et,
        tenant,
    ) = row
    trace: tuple[NodeTrace, ...] = tuple(trace_from_dict(json.loads(t)) for t in traces)
    return Execution(
        id=eid,
        pipeline=pipeline,
        pipeline_version=int(version),
        state=ExecutionState(state),
        parameters=json.loads(params),
        idempotency_key=(key or "").rpartition(_KEY_SEP)[2],
        webhook=webhook_from_dict(json.loads(webhook)) if webhook else None,
        outputs=tensors.loads(outputs) if with_outputs else {},
        trace=trace,
        missing_outputs=tuple(json.loads(missing)) if missing else (),
        error=error or "",
        attempts=int(attempts),
        create_time=float(ct),
        start_time=float(st or 0.0),
        end_time=float(et or 0.0),
        tenant=str(tenant),
    )
