"""Settings of the orchestrator (env prefix ORCHESTRATOR_, or command-line flags)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings, DatabaseSettings, suite_fallback


class OrchestratorSettings(BaseServiceSettings, DatabaseSettings):
    """ModelServe orchestrator."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_")

    service_name: str = "orchestrator"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50052
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9092
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=suite_fallback("ORCHESTRATOR_", "redis_url")
    )
    """redis://… for the work queue and progress events; unset: in-process queue (one replica only)."""
    redis_prefix: str = "modelserve:orchestrator:"
    """Prefix of every Redis key the orchestrator uses."""
    model_server_url: str = "127.0.0.1:50053"
    """host:port of the model server (inference.GRPCInferenceService)."""
    registry_url: str = ""
    """host:port of the registry; set, a model node's version that is not a number (an alias such
    as "production", or "latest") is resolved through it. Unset: versions go to the model server
    as written."""
    alias_cache_s: float = Field(default=5.0, ge=0)
    """How long a resolved alias is reused before the registry is asked again (while the registry
    is unavailable the last answer is used)."""
    model_server_health_service: str = ""
    """Service name the readiness check asks the model server's grpc.health.v1 Check for; "" is
    the whole server."""
    dependency_check_interval_s: float = Field(default=1.0, gt=0)
    """How often readiness re-checks the database, Redis and the model server: NOT_SERVING while
    one of them does not answer, SERVING again once all do (no restart needed)."""
    dependency_check_timeout_s: float = Field(default=2.0, gt=0)
    """Longest wait for one readiness check of a dependency."""
    node_timeout_s: float = Field(default=30.0, gt=0)
    """Default timeout of one attempt of a node (a node's own timeout wins)."""
    node_max_attempts: int = Field(default=3, ge=1)
    """Default attempts of a model call failing UNAVAILABLE (a node's retry policy wins)."""
    node_initial_backoff_s: float = Field(default=0.05, ge=0)
    """Default wait before the first retry of a model call."""
    node_max_backoff_s: float = Field(default=1.0, ge=0)
    """Default longest wait between retries of a model call."""
    max_nodes: int = Field(default=256, ge=1)
    """Most nodes in one pipeline."""
    max_page_size: int = Field(default=1000, ge=1)
    """Largest page a List RPC returns (larger page_size values are clamped)."""
    workers: int = Field(default=16, ge=0)
    """Asynchronous executions one replica runs at once; 0 runs none (API only)."""
    node_record_delay_s: float = Field(default=0.02, ge=0)
    """Asynchronous executions: how long a completed node's result may wait before it is written,
    so that results completing together share one write (and a pipeline that ends sooner writes
    them with its terminal state). A result is recorded at most this much later than it
    completed; one not yet recorded when a replica dies is computed again. 0 writes at once."""
    visibility_timeout_s: float = Field(default=10.0, gt=0)
    """An execution whose replica stopped renewing its lease this long is taken over by another."""
    claim_interval_s: float = Field(default=2.0, gt=0)
    """How often a replica reclaims queue entries of dead replicas (XAUTOCLAIM)."""
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    """How often a replica reconciles the database with the work queue: executions the database
    says are QUEUED (or RUNNING with an expired lease) that have no queue entry are queued again
    (after a Redis restart or loss, or a CreateExecution whose enqueue failed)."""
    reconcile_grace_s: float = Field(default=5.0, gt=0)
    """An execution is re-queued by the reconcile only once it was created or last queued this
    long ago (a younger one may still be on its way into the queue)."""
    reconcile_batch: int = Field(default=200, ge=1)
    """Most executions one reconcile pass examines (the oldest first); the rest wait for the
    next pass."""
    redis_health_check_interval_s: float = Field(default=5.0, ge=0)
    """A pooled Redis connection idle this long is checked with PING (and replaced when dead)
    before it is used; 0 disables the check."""
    redis_retries: int = Field(default=1, ge=0)
    """Redis commands failing with a connection error (a connection broken by a Redis restart)
    are retried this many times, each on a fresh connection."""
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    """Longest wait for a new Redis connection."""
    redis_socket_timeout_s: float = Field(default=10.0, gt=1.0)
    """Longest wait for a Redis answer (must exceed the 1 s blocking reads of the worker)."""
    consumer_name: str = ""
    """This replica's name in the Redis consumer group; empty: host-pid-random."""
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    """Longest wait for a webhook receiver's answer."""
    webhook_max_attempts: int = Field(default=8, ge=1)
    """Attempts of one webhook delivery before it is marked FAILED."""
    webhook_initial_backoff_s: float = Field(default=5.0, ge=0)
    """Wait before the first webhook retry; doubles each attempt, with jitter."""
    webhook_max_backoff_s: float = Field(default=3600.0, ge=0)
    """Longest wait between webhook attempts."""
    webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    """How often a replica looks for webhook deliveries that are due."""
    metrics_interval_s: float = Field(default=10.0, gt=0)
    """How often the execution and webhook gauges (executions by state, queue depth, oldest queued
    age, webhook backlog) are read from the database."""
    webhook_allow: list[str] = Field(default_factory=list)
    """Hosts or CIDRs webhooks may reach even though they are private, loopback or link-local
    (JSON list, e.g. ["127.0.0.1/32"])."""
