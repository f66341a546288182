"""Webhook deliveries of finished executions and their attempts: claimed with a short lease,
each attempt recorded before it is sent and again with its outcome."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelserve_orchestrator.db import Tx
from modelserve_orchestrator.domain import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEvent
from modelserve_orchestrator.store_base import StoreBase


@dataclass(frozen=True)
class NewDelivery:
    webhook_id: str
    url: str
    secrets: tuple[str, ...]
    event: WebhookEvent
    payload: str


@dataclass(frozen=True)
class DueDelivery:
    webhook_id: str
    url: str
    secrets: tuple[str, ...]
    payload: str
    attempts: int


# The error text of a webhook attempt recorded before it is sent, and of one whose replica
# stopped before the answer was recorded (the receiver may or may not have had it).
ATTEMPT_SENDING = "sending"
ATTEMPT_NO_OUTCOME = "no outcome recorded: the replica sending it stopped before the answer"


async def insert_deliveries(tx: Tx, execution_id: str, deliveries: Sequence[NewDelivery], now: float) -> None:
    """Inserts the PENDING deliveries of a finished execution (one statement), due at ``now``."""
    if not deliveries:
        return
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(deliveries))
    rows: list[Any] = []
    for d in deliveries:
        rows += [
            d.webhook_id,
            execution_id,
            d.url,
            json.dumps(list(d.secrets)),
            int(d.event),
            d.payload,
            int(DeliveryState.PENDING),
            now,
            now,
        ]
    await tx.execute(
        "INSERT INTO orch_webhook_deliveries (webhook_id, execution_id, url, secrets, event, "
        f"payload, state, next_attempt_at, create_time) VALUES {values}",
        rows,
    )


class DeliveryStore(StoreBase):
    async def due_deliveries(self, now: float, lease_until: float, limit: int) -> list[DueDelivery]:
        """Claims (with a short lease) pending deliveries whose next attempt is due."""
        claimed: list[DueDelivery] = []
        async with self.db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT webhook_id, url, secrets, payload, attempts FROM orch_webhook_deliveries "
                "WHERE state = ? AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY next_attempt_at LIMIT ?",
                (int(DeliveryState.PENDING), now, now, limit),
            )
            for r in rows:
                n = await tx.execute(
                    "UPDATE orch_webhook_deliveries SET lease_until = ? WHERE webhook_id = ? "
                    "AND (lease_until IS NULL OR lease_until < ?)",
                    (lease_until, r[0], now),
                )
                if n == 1:
                    claimed.append(DueDelivery(r[0], r[1], tuple(json.loads(r[2])), r[3], int(r[4])))
        return claimed

    async def begin_attempt(self, webhook_id: str, attempt: int, now: float) -> None:
        """Records attempt ``attempt`` as in flight (HTTP status 0, error SENDING) and counts it,
        before the request is sent: an attempt whose replica dies before the answer is recorded
        still shows (and counts toward the most attempts). A previous attempt still in flight is
        marked as having no recorded outcome."""
        async with self.db.transaction() as tx:
            await _close_stale_attempt(tx, webhook_id, attempt - 1)
            await tx.execute(
                "INSERT INTO orch_webhook_attempts (webhook_id, attempt, time, http_status, error, latency) "
                "VALUES (?, ?, ?, 0, ?, 0) ON CONFLICT (webhook_id, attempt) DO NOTHING",
                (webhook_id, attempt, now, ATTEMPT_SENDING),
            )
            await tx.execute(
                "UPDATE orch_webhook_deliveries SET attempts = ? WHERE webhook_id = ?",
                (attempt, webhook_id),
            )

    async def give_up_delivery(self, webhook_id: str, last_attempt: int) -> None:
        """Marks a delivery FAILED without another attempt (its last allowed attempt was made
        by a replica that stopped before recording the answer)."""
        async with self.db.transaction() as tx:
            await _close_stale_attempt(tx, webhook_id, last_attempt)
            await tx.execute(
                "UPDATE orch_webhook_deliveries SET state = ?, lease_until = NULL WHERE webhook_id = ?",
                (int(DeliveryState.FAILED), webhook_id),
            )

    async def record_attempt(
        self, webhook_id: str, attempt: WebhookAttempt, state: DeliveryState, next_attempt_at: float
    ) -> None:
        """Records the outcome of an attempt (replacing its in-flight record) and the
        delivery's new state."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO orch_webhook_attempts (webhook_id, attempt, time, http_status, error, latency) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id, attempt) DO UPDATE SET "
                "time = excluded.time, http_status = excluded.http_status, error = excluded.error, "
                "latency = excluded.latency",
                (
                    webhook_id,
                    attempt.attempt,
                    attempt.time,
                    attempt.http_status,
                    attempt.error,
                    attempt.latency_s,
                ),
            )
            await tx.execute(
                "UPDATE orch_webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
                "lease_until = NULL WHERE webhook_id = ?",
                (int(state), attempt.attempt, next_attempt_at, webhook_id),
            )

    async def list_deliveries(self, execution_id: str) -> list[WebhookDelivery]:
        async with self.db.autocommit() as tx:
            rows = await tx.fetch(
                "SELECT webhook_id, url, event, state FROM orch_webhook_deliveries WHERE execution_id = ? "
                "ORDER BY webhook_id",
                (execution_id,),
            )
            out = []
            for r in rows:
                attempts = await tx.fetch(
                    "SELECT attempt, time, http_status, error, latency FROM orch_webhook_attempts "
                    "WHERE webhook_id = ? ORDER BY attempt",
                    (r[0],),
                )
                out.append(
                    WebhookDelivery(
                        r[0],
                        r[1],
                        WebhookEvent(r[2]),
                        DeliveryState(r[3]),
                        tuple(
                            WebhookAttempt(int(a[0]), float(a[1]), int(a[2]), a[3], float(a[4]))
                            for a in attempts
                        ),
                    )
                )
        return out


async def _close_stale_attempt(tx: Tx, webhook_id: str, attempt: int) -> None:
    if attempt >= 1:
        await tx.execute(
            "UPDATE orch_webhook_attempts SET error = ? WHERE webhook_id = ? AND attempt = ? AND error = ?",
            (ATTEMPT_NO_OUTCOME, webhook_id, attempt, ATTEMPT_SENDING),
        )
