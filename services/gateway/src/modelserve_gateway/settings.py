"""Settings of the gateway (env prefix GATEWAY_, or command-line flags)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings


class GatewaySettings(BaseServiceSettings):
    """ModelServe gateway."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    service_name: str = "gateway"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50050
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9090
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
