"""protobuf <-> domain conversions, and the caller identity from gRPC metadata."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import structlog
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.errors import DeadlineExceeded
from modelserve_common.identity import TRUSTED, Caller
from modelserve_registry import errors
from modelserve_registry.artifacts import Download
from modelserve_registry.domain import (
    Alias,
    ApiKey,
    Batching,
    Change,
    Deployment,
    Model,
    ModelVersion,
    PredictionLogging,
    RateLimit,
    Target,
    Tenant,
    TensorSpec,
    to_plain,
)
from modelserve_registry.store import MAX_TIME_US, WATCH_SKIPPED

log = structlog.get_logger(__name__)

_STATUS_TO_PB = {
    "PENDING": registry_pb.ModelVersion.STATUS_PENDING,
    "READY": registry_pb.ModelVersion.STATUS_READY,
    "FAILED": registry_pb.ModelVersion.STATUS_FAILED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
_CHANGE_TO_PB = {
    "CREATED": registry_pb.CHANGE_TYPE_CREATED,
    "UPDATED": registry_pb.CHANGE_TYPE_UPDATED,
    "DELETED": registry_pb.CHANGE_TYPE_DELETED,
}


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """``x-modelserve-tenant`` absent: a trusted in-cluster caller (admin). Present: that tenant
    with the scopes in ``x-modelserve-scopes``."""
    caller = Caller.from_metadata(metadata)
    return TRUSTED if caller.is_trusted else caller


def _ts(us: int | None) -> Timestamp | None:
    """A Timestamp; a stored time outside its range (written before the edge checks existed) is
    clamped to 9999-12-31 rather than failing every read of the resource."""
    if not us:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(min(max(us, 0), MAX_TIME_US))
    return ts


def duration_s(d: Duration) -> float:
    """Seconds of a Duration, without the range checks of ToTimedelta (the service checks the
    value against its limits and answers INVALID_ARGUMENT)."""
    return d.seconds + d.nanos / 1e9


def _us(ts: Timestamp, present: bool) -> int | None:
    """Microseconds of a Timestamp, without ToMicroseconds' range check (the service checks the
    value against its own range and answers INVALID_ARGUMENT)."""
    return ts.seconds * 1_000_000 + ts.nanos // 1000 if present else None


def tensor_spec_to_pb(t: TensorSpec) -> tensor_pb.TensorSpec:
    return tensor_pb.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape)


def tensor_spec_from_pb(t: tensor_pb.TensorSpec) -> TensorSpec:
    return TensorSpec(name=t.name, datatype=t.datatype, shape=list(t.shape))


def batching_to_pb(b: Batching) -> registry_pb.BatchingConfig:
    return registry_pb.BatchingConfig(
        max_batch_size=b.max_batch_size,
        preferred_batch_sizes=b.preferred_batch_sizes,
        max_queue_delay_us=b.max_queue_delay_us,
        max_queue_size=b.max_queue_size,
    )


def batching_from_pb(b: registry_pb.BatchingConfig) -> Batching:
    return Batching(
        max_batch_size=b.max_batch_size,
        preferred_batch_sizes=list(b.preferred_batch_sizes),
        max_queue_delay_us=b.max_queue_delay_us,
        max_queue_size=b.max_queue_size,
    )


def rate_limit_to_pb(r: RateLimit) -> registry_pb.RateLimit:
    return registry_pb.RateLimit(requests_per_second=r.requests_per_second, burst=r.burst)


def rate_limit_from_pb(r: registry_pb.RateLimit) -> RateLimit:
    return RateLimit(requests_per_second=r.requests_per_second, burst=r.burst)


def model_to_pb(m: Model) -> registry_pb.Model:
    return registry_pb.Model(
        name=m.name,
        description=m.description,
        tags=m.tags,
        tenant=m.tenant,
        etag=str(m.revision),
        create_time=_ts(m.create_time),
        update_time=_ts(m.update_time),
        latest_version=m.latest_version,
        shared=m.shared,
    )


def model_from_pb(m: registry_pb.Model) -> Model:
    return Model(name=m.name, tenant=m.tenant, description=m.description, tags=dict(m.tags), shared=m.shared)


def model_version_to_pb(v: ModelVersion) -> registry_pb.ModelVersion:
    return registry_pb.ModelVersion(
        model=v.model,
        version=v.version,
        description=v.description,
        tags=v.tags,
        artifact_uri=v.artifact_uri,
        artifact_sha256=v.artifact_sha256,
        artifact_size_bytes=v.artifact_size_bytes,
        artifact_format=v.artifact_format,
        backend=v.backend,
        inputs=[tensor_spec_to_pb(t) for t in v.inputs],
        outputs=[tensor_spec_to_pb(t) for t in v.outputs],
        batching=batching_to_pb(v.batching),
        metadata=v.metadata,
        lineage=registry_pb.Lineage(source_run=v.source_run, source_uri=v.source_uri),
        status=_STATUS_TO_PB[v.status],
        status_message=v.status_message,
        aliases=v.aliases,
        etag=str(v.revision),
        create_time=_ts(v.create_time),
        update_time=_ts(v.update_time),
    )


def model_version_from_pb(v: registry_pb.ModelVersion) -> ModelVersion:
    status = _STATUS_FROM_PB.get(v.status, "UNSPECIFIED")
    return ModelVersion(
        model=v.model,
        version=v.version,
        description=v.description,
        tags=dict(v.tags),
        artifact_uri=v.artifact_uri,
        artifact_sha256=v.artifact_sha256,
        artifact_size_bytes=v.artifact_size_bytes,
        artifact_format=v.artifact_format,
        backend=v.backend,
        inputs=[tensor_spec_from_pb(t) for t in v.inputs],
        outputs=[tensor_spec_from_pb(t) for t in v.outputs],
        batching=batching_from_pb(v.batching),
        metadata=dict(v.metadata),
        source_run=v.lineage.source_run,
        source_uri=v.lineage.source_uri,
        status=status,
        status_message=v.status_message,
    )


def alias_to_pb(a: Alias) -> registry_pb.Alias:
    return registry_pb.Alias(
        model=a.model, alias=a.alias, version=a.version, etag=str(a.revision), update_time=_ts(a.update_time)
    )


def deployment_to_pb(d: Deployment) -> registry_pb.Deployment:
    return registry_pb.Deployment(
        model=d.model,
        targets=[
            registry_pb.DeploymentTarget(
                version=str(t.version), version_number=t.version, weight=t.weight, mirror=t.mirror
            )
            for t in d.targets
        ],
        batching_overrides=batching_to_pb(d.batching_overrides),
        rate_limit=rate_limit_to_pb(d.rate_limit),
        tenant=d.tenant,
        etag=str(d.revision),
        update_time=_ts(d.update_time),
        shared=d.shared,
        prediction_logging=registry_pb.PredictionLogging(**to_plain(d.prediction_logging)),
    )


def deployment_from_pb(d: registry_pb.Deployment) -> Deployment:
    return Deployment(
        model=d.model,
        tenant="",
        targets=[Target(version=0, weight=t.weight, mirror=t.mirror, requested=t.version) for t in d.targets],
        batching_overrides=batching_from_pb(d.batching_overrides),
        rate_limit=rate_limit_from_pb(d.rate_limit),
        prediction_logging=PredictionLogging(
            sample_ratio=d.prediction_logging.sample_ratio,
            log_request=d.prediction_logging.log_request,
            log_response=d.prediction_logging.log_response,
            max_record_bytes=d.prediction_logging.max_record_bytes,
        ),
    )


def tenant_to_pb(t: Tenant) -> registry_pb.Tenant:
    return registry_pb.Tenant(
        name=t.name,
        display_name=t.display_name,
        rate_limit=rate_limit_to_pb(t.rate_limit),
        max_models=t.max_models,
        etag=str(t.revision),
        create_time=_ts(t.create_time),
        code_execution_allowed=t.code_execution_allowed,
        storage_quota_bytes=t.storage_quota_bytes,
        storage_used_bytes=t.storage_used_bytes,
    )


def tenant_from_pb(t: registry_pb.Tenant) -> Tenant:
    return Tenant(
        name=t.name,
        display_name=t.display_name,
        rate_limit=rate_limit_from_pb(t.rate_limit),
        max_models=t.max_models,
        code_execution_allowed=t.code_execution_allowed,
        storage_quota_bytes=t.storage_quota_bytes,
    )


def implied_tenant_mask(t: registry_pb.Tenant) -> list[str]:
    """AIP-134: without an update_mask, the populated fields are updated."""
    fields = (
        ("display_name", bool(t.display_name)),
        ("rate_limit", t.HasField("rate_limit")),
        ("max_models", t.max_models != 0),
        ("code_execution_allowed", t.code_execution_allowed),
        ("storage_quota_bytes", t.storage_quota_bytes != 0),
    )
    return [p for p, present in fields if present]


def api_key_to_pb(k: ApiKey) -> registry_pb.ApiKey:
    return registry_pb.ApiKey(
        key=k.key,
        tenant=k.tenant,
        display_name=k.display_name,
        scopes=k.scopes,
        rate_limit=rate_limit_to_pb(k.rate_limit),
        expire_time=_ts(k.expire_time),
        create_time=_ts(k.create_time),
        rotate_time=_ts(k.rotate_time),
        previous_secret_expire_time=_ts(k.previous_expire_time),
        revoke_time=_ts(k.revoke_time),
        etag=str(k.revision),
    )


def api_key_from_pb(k: registry_pb.ApiKey) -> ApiKey:
    return ApiKey(
        key=k.key,
        tenant=k.tenant,
        display_name=k.display_name,
        scopes=list(k.scopes),
        rate_limit=rate_limit_from_pb(k.rate_limit),
        expire_time=_us(k.expire_time, k.HasField("expire_time")),
    )


def change_to_pb_or_skip(c: Change) -> registry_pb.WatchResponse | None:
    """The change as a WatchResponse, or None (logged and counted) when it cannot be encoded:
    one bad entry must not fail every Watch at its revision forever."""
    try:
        return change_to_pb(c)
    except Exception as exc:
        WATCH_SKIPPED.labels(stage="encode").inc()
        log.error("registry.watch_change_skipped", revision=c.revision, error=repr(exc)[:300])
        return None


def change_to_pb(c: Change) -> registry_pb.WatchResponse:
    out = registry_pb.WatchResponse(revision=c.revision, commit_time=_ts(c.commit_time), tenant=c.tenant)
    r = c.resource
    if r is None:
        return out  # a progress note: type UNSPECIFIED
    out.type = _CHANGE_TO_PB[c.type]
    if isinstance(r, Model):
        out.model.CopyFrom(model_to_pb(r))
    elif isinstance(r, ModelVersion):
        out.model_version.CopyFrom(model_version_to_pb(r))
    elif isinstance(r, Alias):
        out.alias.CopyFrom(alias_to_pb(r))
    elif isinstance(r, Deployment):
        out.deployment.CopyFrom(deployment_to_pb(r))
    elif isinstance(r, Tenant):
        out.tenant_resource.CopyFrom(tenant_to_pb(r))
    else:
        out.api_key.CopyFrom(api_key_to_pb(r))
    return out


def implied_model_mask(m: registry_pb.Model) -> list[str]:
    """AIP-134: without an update_mask, the populated fields are updated."""
    fields = (("description", bool(m.description)), ("tags", bool(m.tags)), ("shared", m.shared))
    return [p for p, present in fields if present]


def implied_version_mask(v: registry_pb.ModelVersion) -> list[str]:
    """AIP-134: without an update_mask, the populated fields are updated."""
    fields = (
        ("description", bool(v.description)),
        ("tags", bool(v.tags)),
        ("status", v.status != 0),
        ("status_message", bool(v.status_message)),
    )
    return [p for p, present in fields if present]


def verify_to_pb(k: ApiKey, limit: RateLimit, expires: int | None) -> registry_pb.VerifyApiKeyResponse:
    return registry_pb.VerifyApiKeyResponse(
        key=k.key,
        tenant=k.tenant,
        scopes=k.scopes,
        rate_limit=rate_limit_to_pb(limit),
        expire_time=_ts(expires),
    )


async def upload_from_pb(
    requests: AsyncIterator[registry_pb.UploadModelVersionRequest], idle_s: float
) -> tuple[registry_pb.UploadMetadata, AsyncIterator[bytes]]:
    """An upload stream as (its first message's metadata, the bytes of the following chunks);
    DEADLINE_EXCEEDED when the first message does not come within ``idle_s``."""
    try:
        async with asyncio.timeout(idle_s):
            first = await anext(requests, None)
    except TimeoutError:
        raise DeadlineExceeded(
            f"upload idle for more than {idle_s:g} s (REGISTRY_UPLOAD_IDLE_TIMEOUT_S)"
        ) from None
    if first is None or first.WhichOneof("content") != "metadata":
        raise errors.InvalidField("the first message of an upload must carry its metadata")

    async def chunks() -> AsyncIterator[bytes]:
        async for message in requests:
            if message.WhichOneof("content") != "chunk":
                raise errors.InvalidField("after the first message an upload carries only chunks")
            yield message.chunk

    return first.metadata, chunks()


def download_metadata_to_pb(d: Download) -> registry_pb.DownloadModelVersionResponse:
    v = d.version
    return registry_pb.DownloadModelVersionResponse(
        metadata=registry_pb.DownloadMetadata(
            sha256=v.artifact_sha256,
            size_bytes=v.artifact_size_bytes,
            artifact_format=v.artifact_format,
            file_name=d.file_name,
        )
    )
