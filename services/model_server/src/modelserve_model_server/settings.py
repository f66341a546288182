"""Settings of the model_server (env prefix MODEL_SERVER_, or command-line flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings
from modelserve_model_server.triton_settings import TritonSettings

PREDICTION_LOG_SINKS = ("registry", "jsonl", "cloudevents")


class ModelServerSettings(TritonSettings, BaseServiceSettings):
    """ModelServe model_server: the KServe v2 / Triton gRPC inference API on CPU backends."""

    model_config = SettingsConfigDict(env_prefix="MODEL_SERVER_")

    service_name: str = "model_server"
    """Name used in logs, traces and metrics."""
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    """gRPC port; 0 picks a free port."""
    metrics_port: int = Field(default=9093, ge=-1, le=65535)
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port. Worker i of
    `workers` > 1 serves its own metrics on metrics_port + i."""
    access_log_inference: bool = False
    """Also write an access-log line for every successful ModelInfer/ModelStreamInfer call.
    Off by default, as in Triton and KServe: inference successes are counted in the metrics and
    the v2 statistics, failed inference calls are always logged, and every other RPC is logged
    whenever `access_log` is on. A line per inference costs about a tenth of the server's
    throughput on a small model (bench/README.md)."""
    model_repository: Path = Path("models")
    """Folder of the model repository: <repo>/<model>/config.pbtxt and <repo>/<model>/<version>/."""
    load_models: str = "*"
    """Comma-separated models loaded at start; "*" loads every model in the repository, "" none."""
    required_models: str = ""
    """Comma-separated models that must be READY for the server to report ready (besides at least
    one ready model); empty = none beyond that."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the gRPC port (SO_REUSEPORT; new connections go to the workers in
    turn where the kernel lets us load the eBPF program, else by the kernel's hash). Each worker
    loads the same models and has its own queues; ServerReady, ModelReady, ModelStatistics and
    repository load/unload answer for all workers (README, "Workers")."""
    worker_balance: Literal["round_robin", "hash"] = "round_robin"
    """How new connections are spread over the workers: ``round_robin`` (in turn; needs CAP_BPF,
    else falls back to the hash with a warning in the log) or ``hash`` (the kernel's SO_REUSEPORT
    hash of addresses and ports: two connections land on one worker half the time)."""
    worker_index: int = Field(default=0, ge=0, le=63)
    """Set by the first process for the workers it starts (1..workers-1); leave it at 0."""
    worker_dir: Path | None = None
    """Set by the first process: the folder of the workers' unix sockets, through which they
    answer for each other; leave it unset."""
    reuse_port: bool = False
    """Bind the gRPC port with SO_REUSEPORT (set automatically when workers > 1)."""
    onnx_intra_op_threads: int = Field(default=1, ge=0, le=256)
    """ONNX Runtime intra-op threads per model instance (0 = ONNX Runtime's default: all cores)."""
    onnx_inter_op_threads: int = Field(default=1, ge=0, le=256)
    """ONNX Runtime inter-op threads per model instance (0 = ONNX Runtime's default)."""
    max_inputs: int = Field(default=64, ge=1)
    """Most input tensors in one request."""
    max_outputs: int = Field(default=64, ge=1)
    """Most requested outputs in one request."""
    max_elements: int = Field(default=64 * 1024 * 1024, ge=1)
    """Most elements in one input tensor."""
    stream_max_in_flight: int = Field(default=64, ge=1)
    """Requests of one ModelStreamInfer stream that may run at once (answers stay in order)."""
    default_max_queue_size: int = Field(default=1024, ge=0)
    """Queue bound of a model whose config sets none (max_queue_size); 0 is no bound."""
    registry_url: str = ""
    """gRPC address (host:port) of the registry to follow: deployed versions are loaded, undeployed
    ones unloaded, aliases and traffic weights applied (README, "Following the registry"). Empty =
    serve the local repository only."""
    registry_artifact_dir: Path | None = None
    """Where verified copies of registry artifacts are kept (one folder per model version); unset =
    <data_dir>/registry-artifacts."""
    artifact_roots: str = ""
    """Comma-separated folders that registry artifacts (``file://`` URIs) may be read from and that
    model code may be loaded from; a URI outside them (or a symlink out of them, ``..``, a host, a
    FIFO...) marks the version FAILED naming the rule. Empty = ``<data_dir>/artifacts`` plus the
    server's own ``model_repository`` (the platform models). The private copies
    (``registry_artifact_dir``) are always allowed for loading."""
    artifact_cache_dir: Path | None = None
    """Cache of uploaded (blob:) artifacts keyed by sha256, verified and shared by versions; unset =
    <registry_artifact_dir>/.blob-cache. Reused after a restart."""
    artifact_cache_max_bytes: int = Field(default=50 * 1024**3, ge=0)
    """Bytes the artifact cache may hold; beyond it the least recently used entries that no loaded
    version uses are evicted."""
    artifact_fetch_timeout_s: float = Field(default=600.0, gt=0)
    """Longest one download of an uploaded artifact from the registry may take."""
    archive_max_bytes: int = Field(default=20 * 1024**3, ge=1)
    """Most bytes a tar/zip artifact may unpack to (larger, e.g. a decompression bomb: FAILED)."""
    archive_max_files: int = Field(default=10_000, ge=1)
    """Most entries a tar/zip artifact may hold."""
    artifact_uri_max_length: int = Field(default=4096, ge=16, le=65536)
    """Longest artifact URI accepted, in characters; a longer one marks the version FAILED."""
    strict_readiness: bool = False
    """True: the old all-or-nothing readiness (ServerReady/health SERVING only when at least one
    model is ready and every deployed registry model serves). False: the server is ready once
    start-up loading and the first registry sync are done; a model that fails to load is only
    that model not ready (ModelReady false, version FAILED, ``modelserve_model_server_failed_models``)."""
    shared_models: str = ""
    """Comma-separated local (or Triton) repository models without a registry deployment that
    every tenant may call. Other such models are platform models: trusted callers (no
    ``x-modelserve-tenant``) only."""
    registry_backoff_min_s: float = Field(default=0.2, gt=0)
    """First wait before reconnecting to the registry after the Watch stream broke (doubles up to
    registry_backoff_max_s, with jitter)."""
    registry_backoff_max_s: float = Field(default=10.0, gt=0)
    """Longest wait between two reconnection attempts to the registry."""
    registry_watch_timeout_s: float = Field(default=3600.0, gt=0)
    """Deadline of one Watch call; the follower then resumes from the last revision it saw."""
    max_request_elements: int = Field(default=64 * 1024 * 1024, ge=1)
    """Most elements in all input tensors of one request together (max_elements bounds each
    tensor). Checked, with each tensor's count against the bytes actually present, before
    anything is allocated."""

    prediction_log_queue_size: int = Field(default=10_000, ge=1)
    """Sampled prediction records waiting for the writer; when full, new records are dropped and
    counted (modelserve_model_server_prediction_logs_dropped_total{reason="queue_full"})."""
    prediction_log_batch_size: int = Field(default=100, ge=1, le=1000)
    """Most records one WritePredictionLogs call carries (at most the registry's
    REGISTRY_PREDICTION_LOG_MAX_BATCH)."""
    prediction_log_flush_interval_s: float = Field(default=1.0, gt=0)
    """Longest a queued record waits for its batch to fill before the batch is written."""
    prediction_log_max_attempts: int = Field(default=3, ge=1, le=10)
    """Tries per batch while the registry is unreachable; then the batch is dropped and counted
    (reason="sink_unavailable")."""
    prediction_log_retry_backoff_s: float = Field(default=0.2, ge=0)
    """Wait before the n-th retry of a batch: n times this."""
    prediction_log_write_timeout_s: float = Field(default=5.0, gt=0)
    """Deadline of one WritePredictionLogs call."""
    prediction_log_max_record_bytes: int = Field(default=64 * 1024, ge=0)
    """Tensor bytes one record keeps when the deployment's policy names no max_record_bytes; a
    larger request or response is logged by datatype and shape only."""

    prediction_log_sinks: str = "registry"
    """Comma-separated sinks of logged predictions, several at once allowed: ``registry`` (the
    registry's database, readable over the API), ``jsonl`` (a JSON-lines file with size-based
    rotation) and ``cloudevents`` (CloudEvents over HTTP to prediction_log_cloudevents_url). Each
    sink has its own queue of prediction_log_queue_size records and its own retries."""
    prediction_log_jsonl_path: Path | None = None
    """The JSON-lines file; unset = <data_dir>/prediction-logs/predictions.jsonl. Rotated to
    <path>.1 ... <path>.<prediction_log_jsonl_backups> before it would pass
    prediction_log_jsonl_max_bytes. With `workers` > 1, worker i > 0 writes its own file,
    <stem>.worker<i><suffix> beside it (each process rotates only its own file)."""
    prediction_log_jsonl_max_bytes: int = Field(default=64 * 1024**2, ge=1024)
    """Largest size of the JSON-lines file before it is rotated."""
    prediction_log_jsonl_backups: int = Field(default=5, ge=0, le=1000)
    """Rotated JSON-lines files kept (the oldest is deleted): the files hold at most
    (backups + 1) * max_bytes."""
    prediction_log_cloudevents_url: str = ""
    """HTTP(S) URL the ``cloudevents`` sink POSTs to (structured content mode)."""
    prediction_log_cloudevents_batched: bool = True
    """True: one ``application/cloudevents-batch+json`` POST per batch; false: one
    ``application/cloudevents+json`` POST per record."""
    prediction_log_cloudevents_source: str = Field(default="/modelserve/model_server", min_length=1)
    """The CloudEvents ``source`` attribute of the events (a non-empty URI-reference, as the spec
    requires)."""

    @field_validator("prediction_log_sinks")
    @classmethod
    def _known_sinks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("name at least one prediction log sink (registry, jsonl, cloudevents)")
        unknown = sorted(set(names) - set(PREDICTION_LOG_SINKS))
        if unknown:
            raise ValueError(f"unknown prediction log sinks {unknown}; known: {list(PREDICTION_LOG_SINKS)}")
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _cloudevents_needs_a_url(self) -> ModelServerSettings:
        if "cloudevents" in self.prediction_log_sink_names() and not self.prediction_log_cloudevents_url:
            raise ValueError("prediction_log_sinks names cloudevents: set prediction_log_cloudevents_url")
        url = self.prediction_log_cloudevents_url
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"prediction_log_cloudevents_url must be an http(s) URL, got {url!r}")
        return self

    def prediction_log_sink_names(self) -> list[str]:
        """The sinks ``prediction_log_sinks`` names, in order."""
        return [n for n in self.prediction_log_sinks.split(",") if n]

    def prediction_log_jsonl_file(self) -> Path:
        """Where the ``jsonl`` sink of this worker writes: workers sharing one file would each
        rotate it by their own count of its size (a backup rotated away early, a rename of a file
        another worker just created), so worker i > 0 has a file of its own."""
        path = self.prediction_log_jsonl_path or self.data_dir / "prediction-logs" / "predictions.jsonl"
        if self.worker_index > 0:
            path = path.with_name(f"{path.stem}.worker{self.worker_index}{path.suffix}")
        return path

    def artifact_root_paths(self) -> list[Path]:
        """The allowed artifact roots (``artifact_roots``, or its default), made absolute."""
        named = [Path(p.strip()) for p in self.artifact_roots.split(",") if p.strip()]
        if not named:
            named = [self.data_dir / "artifacts", self.model_repository]
        return [p.absolute() for p in named]

    def cache_dir(self) -> Path:
        """Where the artifact cache lives."""
        return self.artifact_cache_dir or self.staging_dir() / ".blob-cache"

    def staging_dir(self) -> Path:
        """Where verified copies of registry artifacts are kept."""
        return self.registry_artifact_dir or self.data_dir / "registry-artifacts"

    def shared_model_names(self) -> frozenset[str]:
        """The local models every tenant may call (``shared_models``)."""
        return frozenset(n.strip() for n in self.shared_models.split(",") if n.strip())
