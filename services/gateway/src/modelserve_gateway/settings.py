"""Settings of the gateway (env prefix GATEWAY_, or command-line flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings, suite_fallback


class GatewaySettings(BaseServiceSettings):
    """ModelServe gateway: REST transcoding, KServe v2 REST, the gRPC front door, auth and limits."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    service_name: str = "gateway"
    """Name used in logs, traces and metrics."""
    grpc_port: int = Field(default=50050, ge=0, le=65535)
    """gRPC front door port; 0 picks a free port."""
    metrics_port: int = 9090
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
    http_host: str = "0.0.0.0"
    """Address the REST (HTTP/1.1) server binds."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """REST port; 0 picks a free port."""
    workers: int = Field(default=1, ge=1, le=64)
    """Gateway processes sharing the gRPC and HTTP ports (SO_REUSEPORT; new connections go to the
    workers in turn, or by the kernel's hash where the eBPF program cannot be loaded: README,
    "Workers"). Worker i serves metrics on metrics_port + i. Each worker has its own registry cache
    and upstream channels; without redis_url each also has its own rate-limit buckets."""
    worker_balance: Literal["round_robin", "hash"] = "round_robin"
    """How new connections are spread over the workers: ``round_robin`` (in turn; needs CAP_BPF,
    else the hash with a warning in the log) or ``hash`` (the kernel's SO_REUSEPORT hash)."""
    worker_index: int = Field(default=0, ge=0, le=63)
    """Set by the first process for the workers it starts (1..workers-1); leave it at 0."""
    reuse_port: bool = False
    """Bind the gRPC and HTTP ports with SO_REUSEPORT (set automatically when workers > 1)."""

    registry_url: str = "localhost:50051"
    """gRPC target of the registry (modelserve.registry.v1.RegistryService)."""
    model_server_url: str = "localhost:50053"
    """gRPC target of the model server (inference.GRPCInferenceService)."""
    model_server_connections: int = Field(default=1, ge=1, le=64)
    """Connections each gateway process opens to the model server; unary calls (REST and the gRPC
    front door's ModelInfer) use them in turn. Set it to the model server's `workers`: the model
    server hands each new connection to its next worker, so one gateway then reaches them all.
    Streams, and every call while tracing is on, use one connection."""
    orchestrator_url: str = "localhost:50052"
    """gRPC target of the orchestrator (modelserve.orchestrator.v1.OrchestratorService)."""
    redis_url: str | None = Field(default=None, validation_alias=suite_fallback("GATEWAY_", "redis_url"))
    """redis://… for shared rate limits; unset: an in-process limiter (per replica)."""

    # Transcoding limits.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest REST request body (bytes); larger ones answer 413."""
    max_tensor_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Largest single input tensor of a KServe v2 REST request (bytes); larger ones answer 413."""
    max_json_depth: int = Field(default=32, ge=2)
    """Deepest nesting of a JSON request body; deeper ones answer 400."""
    max_page_size: int = Field(default=1000, ge=1)
    """Largest page_size a REST caller may ask for; larger ones answer 400."""
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest REST request head (request line + all headers, bytes); a larger one answers 431
    (JSON) and the connection is closed."""
    head_read_timeout_s: float = Field(default=10.0, gt=0)
    """Longest time from a new connection (or the first byte of a request) to the end of the
    request's headers; past it the gateway answers 408 (JSON) and closes the connection (one that
    sent nothing is closed without an answer). Idle keep-alive connections are closed by
    uvicorn's keep-alive timeout (5 s) instead."""
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    """Longest time to receive a whole REST request body (e.g. a client that sends less than
    its Content-Length and keeps the connection open); past it the gateway answers 408 (JSON) and
    closes the connection."""
    registry_timeout_s: float = Field(default=10.0, gt=0)
    """Default deadline of calls to the registry (a Grpc-Timeout header may shorten it)."""
    model_server_timeout_s: float = Field(default=60.0, gt=0)
    """Default deadline of calls to the model server."""
    orchestrator_timeout_s: float = Field(default=300.0, gt=0)
    """Default deadline of calls to the orchestrator."""
    stream_timeout_s: float = Field(default=3600.0, gt=0)
    """Default deadline of server-streaming calls (Watch)."""
    cors_allow_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS ("*" for any); empty disables CORS headers."""
    cors_allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type", "x-api-key", "x-request-id", "grpc-timeout"]
    )
    """Request headers CORS allows."""
    cors_max_age_s: int = Field(default=600, ge=0)
    """How long browsers may cache a CORS preflight answer."""

    # The web console and the API reference (console.py; built by `make setup` from console/).
    console_enabled: bool = True
    """Serve the web console at /console and the OpenAPI viewer at /docs (static files, public:
    the console's API calls need the user's key like any other client's)."""
    console_dir: str | None = None
    """Directory of the console build (index.html, assets/, docs/); unset: the build inside the
    gateway package (assets/console), which `npm run build` in console/ writes."""
    console_cache_max_age_s: int = Field(default=31_536_000, ge=0)
    """Cache lifetime of the console's content-hashed assets (HTML is always revalidated)."""

    # Authentication.
    auth_enabled: bool = True
    """Require credentials on every route except health and docs. Secure by default; turn off
    only on a developer machine."""
    admin_api_key: SecretStr | None = None
    """A bootstrap secret with every scope and no tenant (creates the first tenants and keys)."""
    api_key_cache_ttl_s: float = Field(default=30.0, ge=0)
    """How long a verified API key is trusted without asking the registry again (a revocation
    seen on the registry's Watch clears it at once)."""
    watch_registry: bool = True
    """Follow the registry's Watch stream (revocations, deployment changes)."""
    watch_backoff_min_s: float = Field(default=0.2, gt=0)
    """First wait before re-opening a broken Watch stream; it doubles up to
    ``watch_backoff_max_s``, each wait drawn between half and one and a half times the step."""
    watch_backoff_max_s: float = Field(default=5.0, gt=0)
    """Longest step of the Watch reconnection backoff (at least ``watch_backoff_min_s``)."""
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] | None = None
    """The one JWT algorithm accepted; unset disables JWT authentication."""
    jwt_key: SecretStr | None = None
    """HS256: the shared secret. RS256/ES256: the PEM public key."""
    jwt_issuer: str | None = None
    """Required `iss` claim; unset: not checked."""
    jwt_audience: str | None = None
    """Required `aud` claim; unset: tokens with an `aud` claim are refused."""
    jwt_tenant_claim: str = "tenant"
    """The claim that names the caller's tenant."""
    jwt_leeway_s: float = Field(default=0.0, ge=0)
    """Clock skew allowed on exp/nbf."""
    jwt_platform_admin_claim: str | None = None
    """A claim that, when it is JSON `true`, makes the token the platform administrator (no tenant,
    every scope). Unset: no JWT is ever a platform administrator (a tenant token's "admin" scope
    means "tenant-admin")."""
    jwt_platform_admin_issuer: str | None = None
    """If set, the platform-admin claim counts only in tokens whose `iss` is this issuer (also
    accepted besides jwt_issuer); needs jwt_platform_admin_claim."""

    # Rate limits and protection.
    rate_limit_fail_open: bool = True
    """When Redis is unreachable: true lets requests through (with a metric and a log), false
    answers 503."""
    default_rate_limit_rps: float = Field(default=0.0, ge=0)
    """Per-key limit for principals whose key carries none (0: unlimited)."""
    default_rate_limit_burst: int = Field(default=0, ge=0)
    """Burst for default_rate_limit_rps (0: the rate rounded up)."""
    max_in_flight: int = Field(default=1024, ge=0)
    """Most requests handled at once across REST and gRPC; more are shed with 503/UNAVAILABLE
    and Retry-After (0: unbounded)."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive UNAVAILABLE/DEADLINE_EXCEEDED answers of an upstream that open its breaker."""
    breaker_open_s: float = Field(default=5.0, gt=0)
    """How long an open breaker fails fast before letting one probe through."""
    deployment_cache_ttl_s: float = Field(default=5.0, ge=0)
    """How long a model's deployment (owner, weights, limit) is reused without asking the registry
    (Watch updates it at once)."""
    route_key_header: str = "x-modelserve-route-key"
    """A request header whose value makes canary routing sticky (same value, same version)."""
    canary_sticky_per_key: bool = True
    """Without a route key header, route the same API key to the same version."""
    stream_infer_buffer: int = Field(default=16, ge=1, le=4096)
    """ModelStreamInfer through the gRPC front door: answers (the upstream's and the gateway's own
    per-message errors) held for a slow reader before the gateway stops reading the upstream,
    whose gRPC flow control then holds it back."""

    @model_validator(mode="after")
    def _watch_backoff_bounds(self) -> GatewaySettings:
        if self.watch_backoff_max_s < self.watch_backoff_min_s:
            raise ValueError(
                f"watch_backoff_max_s ({self.watch_backoff_max_s}) must be at least "
                f"watch_backoff_min_s ({self.watch_backoff_min_s})"
            )
        return self
