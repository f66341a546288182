"""Settings of the Triton path, mixed into ModelServerSettings (env prefix MODEL_SERVER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TritonSettings(BaseSettings):
    """The model server's Triton backend. Empty ``triton_url`` turns the Triton path off."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, use_attribute_docstrings=True, env_nested_delimiter="__"
    )

    triton_url: str = ""
    """Triton gRPC endpoints (host:port), comma-separated replicas; empty = no Triton."""
    triton_models: str = ""
    """Comma-separated models served through Triton and required READY for readiness; empty =
    every model in Triton's repository index is served, and readiness needs a ready replica."""
    triton_channels_per_endpoint: int = Field(default=2, ge=1, le=64)
    """HTTP/2 connections per Triton replica (large loads are not serialized on one)."""
    triton_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a forwarded call when the incoming call has none."""
    triton_max_timeout_s: float = Field(default=300.0, gt=0)
    """Upper clamp of the deadline passed on to Triton (the incoming call's remaining time)."""
    triton_deadline_margin_s: float = Field(default=0.005, ge=0)
    """Taken off the incoming call's remaining time, so the Triton hop expires (and answers
    DEADLINE_EXCEEDED) just before the caller's own deadline."""
    triton_probe_interval_s: float = Field(default=0.5, gt=0)
    """Seconds between health probes (ServerReady) of each replica and index refreshes."""
    triton_probe_timeout_s: float = Field(default=1.0, gt=0)
    """Deadline of one health probe."""
    triton_eject_s: float = Field(default=1.0, ge=0)
    """Least time a failing replica stays ejected; doubles per consecutive failure."""
    triton_eject_max_s: float = Field(default=30.0, ge=0)
    """Longest ejection before the next probe may re-admit the replica."""
    triton_index_refresh_s: float = Field(default=2.0, gt=0)
    """Seconds between RepositoryIndex refreshes (which models Triton serves)."""
