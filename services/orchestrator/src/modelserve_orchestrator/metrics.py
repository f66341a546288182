"""The orchestrator's domain metrics (the gRPC server, database and readiness metrics come from
modelserve_common.metrics).

Execution and webhook gauges describe the shared database, not this replica: a background
sampler (``MetricsSampler``) reads them every ``metrics_interval_s``, so every replica exports the
same values; dashboards and alerts take ``max`` over replicas, never ``sum``. Labels are bounded:
states are our enums; pipeline and node names are those of created pipelines (authenticated
callers, a bounded catalogue), never request data."""

from __future__ import annotations

import asyncio
import time

import structlog
from prometheus_client import Counter, Gauge, Histogram

from modelserve_orchestrator.db import Database
from modelserve_orchestrator.domain import DeliveryState, ExecutionState, NodeTrace

log = structlog.get_logger(__name__)

EXECUTIONS = Gauge(
    "modelserve_orchestrator_executions", "Executions in the database by state (sampled).", ["state"]
)
QUEUE_DEPTH = Gauge("modelserve_orchestrator_queue_depth", "Executions waiting to run (QUEUED, sampled).")
OLDEST_QUEUED_AGE = Gauge(
    "modelserve_orchestrator_oldest_queued_age_seconds",
    "Age of the oldest QUEUED execution since it was created (0 when none waits; sampled).",
)
WEBHOOK_BACKLOG = Gauge(
    "modelserve_orchestrator_webhook_backlog", "Webhook deliveries still PENDING (sampled)."
)
WEBHOOK_OLDEST_DUE_AGE = Gauge(
    "modelserve_orchestrator_webhook_oldest_due_age_seconds",
    "How long the most overdue PENDING delivery has been due (0 when none is overdue; sampled).",
)
SAMPLES_FAILED = Counter(
    "modelserve_orchestrator_metrics_samples_failed_total",
    "Samples of the execution and webhook gauges that failed (the database did not answer).",
)
NODE_SECONDS = Histogram(
    "modelserve_orchestrator_node_seconds",
    "Pipeline node latency including retries (seconds), by pipeline, node and final node status.",
    ["pipeline", "node", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
NODE_RETRIES = Counter(
    "modelserve_orchestrator_node_retries_total",
    "Extra attempts pipeline nodes needed (attempts - 1), by pipeline and node.",
    ["pipeline", "node"],
)
WEBHOOK_ATTEMPTS = Counter(
    "modelserve_orchestrator_webhook_attempts_total",
    "Webhook delivery attempts by the state they left the delivery in "
    "(DELIVERED, PENDING = will retry, FAILED = gave up, GONE = 410, REFUSED = destination not allowed).",
    ["outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "modelserve_orchestrator_webhook_attempt_seconds",
    "Latency of one webhook delivery attempt (seconds).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
for _state in DeliveryState:
    if _state is not DeliveryState.UNSPECIFIED:
        WEBHOOK_ATTEMPTS.labels(_state.name)


def observe_node(pipeline: str, trace: NodeTrace) -> None:
    """Records one finished node (skipped nodes and nodes that never ran are not timed)."""
    if trace.attempts <= 0:
        return
    NODE_SECONDS.labels(pipeline, trace.node, trace.status.name).observe(trace.latency_s)
    NODE_RETRIES.labels(pipeline, trace.node).inc(trace.attempts - 1)  # 0 too: the series exists


def observe_webhook_attempt(state: DeliveryState, latency_s: float) -> None:
    WEBHOOK_ATTEMPTS.labels(state.name).inc()
    WEBHOOK_ATTEMPT_SECONDS.observe(latency_s)


class MetricsSampler:
    """Reads the execution and delivery gauges from the database every ``interval_s``."""

    def __init__(self, db: Database, interval_s: float) -> None:
        self._db = db
        self._interval_s = interval_s

    async def sample(self) -> None:
        now = time.time()
        async with self._db.autocommit() as tx:
            by_state = await tx.fetch("SELECT state, COUNT(*) FROM orch_executions GROUP BY state")
            oldest = await tx.fetchone(
                "SELECT MIN(create_time) FROM orch_executions WHERE state = ?", (int(ExecutionState.QUEUED),)
            )
            backlog = await tx.fetchone(
                "SELECT COUNT(*), MIN(next_attempt_at) FROM orch_webhook_deliveries WHERE state = ?",
                (int(DeliveryState.PENDING),),
            )
        counts = {int(state): int(n) for state, n in by_state}
        for state in ExecutionState:
            if state is not ExecutionState.UNSPECIFIED:
                EXECUTIONS.labels(state.name).set(counts.get(int(state), 0))
        QUEUE_DEPTH.set(counts.get(int(ExecutionState.QUEUED), 0))
        OLDEST_QUEUED_AGE.set(max(0.0, now - float(oldest[0])) if oldest and oldest[0] is not None else 0.0)
        pending, due = (backlog or (0, None))[:2]
        WEBHOOK_BACKLOG.set(int(pending or 0))
        WEBHOOK_OLDEST_DUE_AGE.set(max(0.0, now - float(due)) if due is not None else 0.0)

    async def run(self) -> None:
        """Samples until cancelled; a failed sample is logged and counted, never fatal."""
        while True:
            try:
                await self.sample()
            except Exception as exc:  # the database is down: readiness reports it; keep sampling
                SAMPLES_FAILED.inc()
                log.warning("metrics.sample_failed", error=str(exc)[:200])
            await asyncio.sleep(self._interval_s)
