"""Settings of the registry (env prefix REGISTRY_, or command-line flags)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings


class RegistrySettings(BaseServiceSettings):
    """ModelServe registry."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_")

    service_name: str = "registry"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50051
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9091
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
