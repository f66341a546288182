"""Settings of the model_server (env prefix MODEL_SERVER_, or command-line flags)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings
from modelserve_model_server.triton_settings import TritonSettings


class ModelServerSettings(TritonSettings, BaseServiceSettings):
    """ModelServe model_server."""

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVER_")

    service_name: str = "model_server"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50053
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9093
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
