"""Settings of the orchestrator (env prefix ORCHESTRATOR_, or command-line flags)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings


class OrchestratorSettings(BaseServiceSettings):
    """ModelServe orchestrator."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_")

    service_name: str = "orchestrator"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50052
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9092
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
