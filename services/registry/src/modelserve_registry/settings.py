"""Settings of the registry (env prefix REGISTRY_, or command-line flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from modelserve_common.artifact_store import ArtifactStoreSettings
from modelserve_common.config import BaseServiceSettings, DatabaseSettings
from modelserve_registry.s3_refs import parse_allowed

S3_MAX_PARTS = 10_000
"""The most parts of one S3 multipart upload (AWS, MinIO and the others)."""


class RegistrySettings(BaseServiceSettings, DatabaseSettings):
    """ModelServe registry."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_")

    service_name: str = "registry"
    """Name used in logs, traces and metrics."""
    grpc_port: int = 50051
    """gRPC port; 0 picks a free port."""
    metrics_port: int = 9091
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
    db_check_interval_s: float = Field(default=1.0, gt=0)
    """How often readiness pings the database (and retries migrations while it is down)."""
    db_check_timeout_s: float = Field(default=1.0, gt=0)
    """Longest a readiness ping may take before the database counts as down (NOT_SERVING). An RPC
    whose database call fails with an outage turns readiness NOT_SERVING at once, without waiting."""
    key_grace_period_s: float = Field(default=86400.0, ge=0)
    """How long a rotated-out API-key secret keeps working when the request names no grace period."""
    max_key_rotation_grace_s: float = Field(default=30 * 86400.0, ge=0, le=100 * 366 * 86400.0)
    """Longest grace period RotateApiKey accepts (longer: INVALID_ARGUMENT); at most 100 years."""
    artifact_roots: str = ""
    """Comma list of folders a version's file:// artifact_uri must lie under (after resolving
    symbolic links); empty means <data_dir>/artifacts."""
    artifact_s3_allowed: str = ""
    """Comma list of ``bucket`` or ``bucket/prefix`` an ``s3://bucket/key`` artifact_uri must lie
    under (it also needs artifact_sha256); empty (default) refuses s3:// references. The objects
    are read with the REGISTRY_ARTIFACTS__S3__* endpoint and credentials."""
    watch_poll_interval_s: float = Field(default=0.5, gt=0)
    """How often Watch looks for changes committed by other registry replicas."""
    watch_progress_interval_s: float = Field(default=15.0, gt=0)
    """Idle Watch streams get a progress note (current revision) this often."""
    change_retention: int = Field(default=1_000_000, ge=1000)
    """Changes kept for Watch resume; older ones are compacted (resuming before them: OUT_OF_RANGE)."""
    max_page_size: int = Field(default=1000, ge=1)
    """Largest page a List RPC returns (larger page_size values are clamped)."""
    max_tags: int = Field(default=64, ge=0)
    """Most tags (and metadata entries) on one model or version."""
    max_text_bytes: int = Field(default=4096, ge=64)
    """Longest description, tag value, status message or URI (bytes of UTF-8)."""

    artifacts: ArtifactStoreSettings = Field(default_factory=ArtifactStoreSettings)
    """Where uploaded artifacts live: REGISTRY_ARTIFACTS__KIND=local (default, under
    <data_dir>/blobs or REGISTRY_ARTIFACTS__LOCAL_DIR) or s3 (REGISTRY_ARTIFACTS__S3__BUCKET,
    __PREFIX, __ENDPOINT_URL, __REGION, __ACCESS_KEY_ID, __SECRET_ACCESS_KEY; empty credentials use
    the standard AWS chain), and __TEMPORARY_TIMEOUT_S (unfinished uploads swept after it)."""
    malloc_mmap_threshold_bytes: int = Field(default=128 * 1024, ge=0, le=32 * 1024**2)
    """glibc malloc: blocks at least this big are mmap-ed and returned to the system when freed
    (mallopt M_MMAP_THRESHOLD, fixed: bounds the RSS that uploads' MiB-sized chunks leave behind);
    0 = glibc's default (dynamic). No effect on another C library."""
    malloc_arena_max: int = Field(default=2, ge=0, le=1024)
    """glibc malloc: at most this many arenas (mallopt M_ARENA_MAX at start; fewer arenas keep
    worker threads' freed upload memory from lingering in one arena each); 0 = glibc's default."""
    max_artifact_bytes: int = Field(default=10 * 1024**3, ge=1)
    """Largest artifact an upload may store (larger: RESOURCE_EXHAUSTED)."""
    tenant_storage_quota_bytes: int = Field(default=0, ge=0)
    """Artifact bytes one tenant's versions may reference (distinct blobs); 0 = no quota.
    Exceeded: RESOURCE_EXHAUSTED naming the use and the quota."""
    upload_idle_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """An upload that sends nothing for this long fails (DEADLINE_EXCEEDED) and stores nothing."""
    blob_grace_s: float = Field(default=3600.0, ge=0)
    """A blob no version references is deleted once untouched (uploaded) for this long."""
    blob_sweep_interval_s: float = Field(default=300.0, gt=0)
    """How often the sweeper deletes unreferenced blobs and stale temporary uploads."""
    max_signature_bytes: int = Field(default=512 * 1024**2, ge=0)
    """Largest uploaded ONNX file whose signature is read to fill/check tensor specs."""
    max_concurrent_signature_reads: int = Field(default=2, ge=1, le=64)
    """Uploaded ONNX files whose signature is read at once (each is held in memory while read:
    up to this many times max_signature_bytes); further uploads wait their turn."""

    prediction_log_max_batch: int = Field(default=1000, ge=1)
    """Most records one WritePredictionLogs call may carry (more: INVALID_ARGUMENT)."""
    prediction_log_max_record_bytes: int = Field(default=1024 * 1024, ge=0)
    """A logged record whose tensors hold more raw bytes than this is stored with datatype and
    shape only."""
    prediction_log_retention_s: float = Field(default=7 * 86400.0, gt=0)
    """Logged predictions older than this are deleted by the sweeper."""
    prediction_log_sweep_batch: int = Field(default=10_000, ge=1)
    """Expired prediction logs deleted per transaction (the sweeper repeats until none is left)."""
    prediction_log_sweep_interval_s: float = Field(default=300.0, gt=0)
    """How often the sweeper deletes expired prediction logs and refreshes the drift gauge
    (modelserve_registry_feature_drift_score)."""
    drift_window_s: float = Field(default=3600.0, gt=0)
    """The window GetModelVersionDrift (and the drift gauge) judges when the request names none."""
    drift_max_window_s: float = Field(default=30 * 86400.0, gt=0)
    """Longest window a GetModelVersionDrift request may name (longer: INVALID_ARGUMENT)."""
    drift_max_records: int = Field(default=10_000, ge=1)
    """Most logged requests one drift computation reads (the newest of the window), and the largest
    from_logged_requests SetDriftReference accepts."""
    drift_max_features: int = Field(default=256, ge=1)
    """Most features a drift reference holds (further columns are ignored)."""
    drift_bins: int = Field(default=10, ge=2, le=100)
    """Quantile bins of a drift reference (PSI is computed over them)."""

    @model_validator(mode="after")
    def _grace_within_max(self) -> RegistrySettings:
        if self.key_grace_period_s > self.max_key_rotation_grace_s:
            raise ValueError(
                f"key_grace_period_s ({self.key_grace_period_s}) exceeds max_key_rotation_grace_s "
                f"({self.max_key_rotation_grace_s})"
            )
        return self

    @model_validator(mode="after")
    def _largest_upload_fits_in_parts(self) -> RegistrySettings:
        parts = self.artifacts.s3.part_size_bytes * S3_MAX_PARTS
        if self.artifacts.kind == "s3" and self.max_artifact_bytes > parts:
            raise ValueError(
                f"max_artifact_bytes ({self.max_artifact_bytes}) exceeds what S3 can take in "
                f"{S3_MAX_PARTS} parts of artifacts.s3.part_size_bytes ({parts}): raise the part size"
            )
        return self

    @field_validator("artifact_s3_allowed")
    @classmethod
    def _s3_allowed_buckets(cls, value: str) -> str:
        parse_allowed(value)  # a bad bucket name is a ValueError naming the setting
        return value

    def artifact_root_paths(self) -> tuple[Path, ...]:
        """The allowed artifact roots (artifact_roots, else <data_dir>/artifacts)."""
        roots = [r.strip() for r in self.artifact_roots.split(",") if r.strip()]
        return tuple(Path(r) for r in roots) or (Path(self.data_dir) / "artifacts",)
